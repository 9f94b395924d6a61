"""Preference tuning with TRL's DPO on ftune's data, templates, techniques and training loop.

With LoRA (or any adapter technique) the reference model is the base with the adapters
disabled, so no second copy of the model sits in memory. Held-out preference accuracy and
reward margin are measured before and after training. The loss is the mean over each step's
pairs, however they are split into micro-batches or among processes (``train.processes``).
"""

from __future__ import annotations

from typing import Any

from ftune.config import Config, split_seed
from ftune.training.loop import TrainedRun


def preference_rows(pairs, template, tokenizer, max_length: int) -> list[dict[str, str]]:
    """TRL's standard (text) preference rows, rendered with ftune's template so DPO sees
    exactly the text SFT and generation use: prompt up to the assistant header, replies
    ending with the end-of-turn marker. Long conversations lose their oldest turns first
    (as in evaluation), so the truncation TRL applies does not cut away the replies."""
    from ftune.eval.preference import fit_prompt_turns

    end = template.end_of_turn or tokenizer.eos_token
    rows = []
    for pair in pairs:
        pair = fit_prompt_turns(pair, template, tokenizer, max_length)
        prompt = template.render_prompt(pair.prompt)
        # "length" (characters, a proxy for tokens) lets the Trainer group pairs of similar size.
        rows.append({"prompt": prompt, "chosen": pair.chosen + end, "rejected": pair.rejected + end,
                     "length": len(prompt) + max(len(pair.chosen), len(pair.rejected))})
    return rows


def train_dpo(config: Config, echo=print, resume=None) -> TrainedRun:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from ftune.data.prepare_generative import build_generative_data
    from ftune.eval.preference import encode_pair, preference_scores
    from ftune.eval.verdict import preference_run_verdict, with_preference_intervals
    from ftune.methods import build_method
    from ftune.models.load import load_causal_lm
    from ftune.training.distributed import current_world
    from ftune.training.loop import (build_trainer, open_run, result_of_other_process, run_training,
                                     start_generative_run)
    from ftune.training.memory_fit import BatchShape, fit_to_memory
    from ftune.recipes.preference_eval import with_preference_evaluation
    from ftune.recipes.finish import finish_training
    from ftune.training.trainer import with_summed_pair_loss

    method = build_method(config.method.name, config.method.options)
    data = build_generative_data(config.data, split_seed(config))
    start = start_generative_run(config, method, data, "dpo", echo, resume)
    run, prepared, template = start.run, start.prepared, start.template
    tokenizer = prepared.task.tokenizer
    data.manifest.update({"template": template.name, "max_length": config.model.max_length})
    echo(f"ftune: {len(data.train):,} training / {len(data.validation):,} validation preference pairs "
         f"({data.format}), template {template.name}, beta {config.objective.beta}")

    reference = None if method.saves_adapter else load_causal_lm(config.model.name).model
    held_out = [encode_pair(p, template, tokenizer, config.model.max_length) for p in data.validation]
    t = config.train
    session = build_trainer(
        config, method, prepared,
        Dataset.from_list(preference_rows(data.train, template, tokenizer, config.model.max_length)),
        Dataset.from_list(preference_rows(data.validation, template, tokenizer, config.model.max_length)),
        None, run, metric="loss", greater_is_better=False, eval_batch_size=max(1, min(t.eval_batch_size, t.batch_size)),
        trainer_class=with_preference_evaluation(with_summed_pair_loss(DPOTrainer)), args_class=DPOConfig,
        learning_rate_key="preference",
        extra_args={"beta": config.objective.beta, "max_length": config.model.max_length,
                    "precompute_ref_log_probs": False,
                    "disable_dropout": True, "truncation_mode": "keep_start"},
        extra_trainer_kwargs={"processing_class": tokenizer, "ref_model": reference},
    )
    # Plan, and check the longest pair batch, before the slow "before" scoring.
    shape = BatchShape(pair_lengths(session.trainer.train_dataset, config.model.max_length), t.batch_size,
                       rows_per_example=2)
    session.memory_plan = fit_to_memory(config, session.trainer, prepared, shape, head="trl", echo=echo)
    open_run(run, config, data.manifest, session.memory_plan, echo)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def measure_base() -> dict[str, Any]:
        echo("ftune: measuring the model before training ...")
        return preference_scores(prepared.model, held_out, config.objective.beta, reference, pad_id,
                                 same_as_reference=True)  # untrained: the model is its reference

    if current_world().main:  # the others only train
        before = run.measured_once("before.json", measure_base)

    trainer = session.trainer
    disabled = method.disabled if reference is None else None  # adapters off: the reference
    trainer.held_out_pairs, trainer.beta, trainer.reference, trainer.disabled, trainer.pad_id = (
        held_out, config.objective.beta, reference, disabled, pad_id)
    training = run_training(session, config, echo)
    other_process = result_of_other_process(run, training, "dpo")
    if other_process:
        return other_process
    # the kept weights were scored when they were evaluated; score again only if they never were
    after = trainer.scores_by_step.get(training["kept_step"])
    if after is None:
        echo("ftune: measuring the model after training ...")
        after = preference_scores(trainer.model, held_out, config.objective.beta, reference, pad_id,
                                  disabled=disabled)

    metrics: dict[str, Any] = {"validation": {"before": dict(before), "after": dict(after)}, "training": training}
    for scores in metrics["validation"].values():
        with_preference_intervals(scores, seed=config.train.seed)

    def verdict(cost):
        return preference_run_verdict(before, after, cost=cost, seed=config.train.seed)

    return finish_training(run, config, "dpo", data.manifest, metrics, method=method, model=session.trainer.model,
                           tokenizer=tokenizer, extra={"template": template.name, "objective": "dpo"}, verdict=verdict,
                           tracking=session.tracking)


def pair_lengths(dataset, max_length: int) -> list[int]:
    """Tokens of each pair's longer row (prompt + chosen or rejected), as TRL's collator cuts them."""
    return [min(max_length, len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])))
            for row in dataset]
