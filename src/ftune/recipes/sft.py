"""Supervised fine-tuning of a decoder LLM on instructions, chats or plain text.

Loss falls on the response tokens only (and on the end-of-turn token, so the model learns to
stop); batches group sequences of similar length and pad dynamically. Held-out response loss,
perplexity and generation samples are measured before and after training.
"""

from __future__ import annotations

from typing import Any

from ftune.config import Config, split_seed
from ftune.training.loop import TrainedRun


def prompt_turns(example) -> list[Any] | None:
    """The turns a held-out example's last reply answers; None for plain text."""
    from ftune.data.conversation import Conversation, PreferencePair

    if isinstance(example, Conversation):
        last = max(i for i, m in enumerate(example.messages) if m.role == "assistant")
        return example.messages[:last]
    if isinstance(example, PreferencePair):
        return list(example.prompt)
    return None


def sample_prompts(examples, count: int) -> list[list[Any]]:
    """The prompt turns of the first ``count`` held-out conversations (fixed, so before and
    after are comparable)."""
    if count <= 0:  # generate.samples=0: no samples (not every held-out prompt)
        return []
    return [turns for turns in map(prompt_turns, examples) if turns is not None][:count]


def train_sft(config: Config, echo=print, resume=None) -> TrainedRun:
    from ftune.data.collate import PaddedCausalCollator
    from ftune.data.encode import EncodedDataset, encode_examples, scored_examples, stop_token_ids
    from ftune.eval.baselines import PREDICTIONS
    from ftune.eval.verdict import (classification_verdict, perplexity_run_verdict, with_intervals,
                                    with_perplexity_intervals)
    from ftune.recipes.results import generative_titles
    from ftune.data.prepare_generative import build_generative_data
    from ftune.methods import build_method
    from ftune.training.distributed import current_world
    from ftune.training.loop import (build_trainer, open_run, result_of_other_process, run_training,
                                     start_generative_run)
    from ftune.training.memory_fit import BatchShape, fit_to_memory
    from ftune.recipes.finish import finish_training
    from ftune.training.trainer import ResponseLossTrainer

    method = build_method(config.method.name, config.method.options)
    labeled = None
    if _is_labeled_data(config):
        from ftune.recipes.labeled_task import labeled_task_as_chat

        data, labeled = labeled_task_as_chat(config)
    else:
        data = build_generative_data(config.data, split_seed(config))
    start = start_generative_run(config, method, data, "sft", echo, resume)
    run, prepared, template = start.run, start.prepared, start.template
    tokenizer = prepared.task.tokenizer
    train_items, train_truncated = encode_examples(data.train, template, tokenizer, config.model.max_length)
    validation_items, _ = encode_examples(data.validation, template, tokenizer, config.model.max_length)
    data.manifest.update({"template": template.name, "truncated_train_rows": train_truncated,
                          "max_length": config.model.max_length})
    echo(f"ftune: {len(train_items):,} training / {len(validation_items):,} validation {data.format} examples, "
         f"template {template.name}; {train_truncated} truncated at model.max_length={config.model.max_length}")

    collator = PaddedCausalCollator.from_tokenizer(tokenizer)
    packed = config.train.batching == "padding_free"
    train_collator = collator
    if packed:
        from ftune.data.collate import PaddingFreeCollator

        train_collator = PaddingFreeCollator()
    session = build_trainer(config, method, prepared, EncodedDataset(train_items), EncodedDataset(validation_items),
                            train_collator, run, metric="loss", greater_is_better=False,
                            eval_batch_size=_scoring_batch_size(config), trainer_class=ResponseLossTrainer)
    # The plan and its check on the longest batch come before the slow "before" measurement,
    # so a run that cannot fit fails in seconds, and before its run directory exists.
    shape = BatchShape([len(item["input_ids"]) for item in train_items], config.train.batch_size, packed=packed)
    session.memory_plan = fit_to_memory(config, session.trainer, prepared, shape, head="chunked", echo=echo)
    open_run(run, config, data.manifest, session.memory_plan, echo)

    eos_ids = stop_token_ids(tokenizer)
    held_out = scored_examples(data.validation, template, tokenizer, config.model.max_length)
    # Replies side by side: with adapters, for the prompts where base and tuned differ most in
    # likelihood, the base generating with its adapters off after training; otherwise (the
    # model's own weights trained) for the first prompts, the base generating before training.
    contrast = method.saves_adapter
    first_prompts = [] if contrast else sample_prompts(held_out, config.generate.samples)

    def measure_base() -> dict[str, Any]:
        from ftune.eval.prompting_baselines import prompting_baselines

        before = _measure(config, prepared.model, tokenizer, template, validation_items, collator, first_prompts,
                          eos_ids, echo, "before")
        prompting, label_scores = {}, {}
        if labeled:
            echo("ftune: zero-shot, few-shot and retrieval-augmented prompting of the base model ...")
            label_scores = labeled.base_scores(config, prepared.model, tokenizer, template, echo)
        else:
            prompting = prompting_baselines(config, prepared.model, tokenizer, template, data.train, held_out,
                                            collator, _scoring_batch_size(config), echo)
        return {"before": before, "labels": label_scores, "prompting": prompting}

    if current_world().main:  # the others only train
        base = run.measured_once("before.json", measure_base)
        before, label_scores, prompting = base["before"], base["labels"], base.get("prompting", {})

    training = run_training(session, config, echo)
    other_process = result_of_other_process(run, training, "sft")
    if other_process:
        return other_process
    model = session.trainer.model
    after = _measure(config, model, tokenizer, template, validation_items, collator, first_prompts, eos_ids,
                     echo, "after")
    if contrast:
        samples = _contrasting_samples(config, method, model, tokenizer, template, held_out, before, after, eos_ids)
    else:
        samples = [{"prompt": [m.__dict__ for m in p], "before": b, "after": a}
                   for p, b, a in zip(first_prompts, before["samples"], after["samples"])]

    metrics = {"validation": {"before": before["scores"], **prompting, "after": after["scores"]},
               "training": training}
    with_perplexity_intervals(metrics["validation"], seed=config.train.seed)
    if labeled:
        label_scores["fine_tuned"] = labeled.accuracy(model, tokenizer, template)
        with_intervals(label_scores, labeled.data.validation.label_ids, seed=config.train.seed)
        metrics["validation"]["labels"] = label_scores
    run.write_json("samples.json", samples)
    extra = {"template": template.name}
    if labeled:  # lets `ftune eval RUN --data labeled.csv` score labels the same way
        extra.update({"labels": labeled.data.label_names, "label_words": labeled.words,
                      "instruction": labeled.instruction})

    def verdict(cost):
        titles = generative_titles(config)
        if labeled:  # the question a labeled task asks: did it choose the right labels?
            truth = labeled.data.validation.label_ids
            correct = {key: [p == t for p, t in zip(scores[PREDICTIONS], truth)]
                       for key, scores in label_scores.items() if PREDICTIONS in scores}
            scored = {key: {**scores, "title": titles.get(key, key)} for key, scores in label_scores.items()}
            found = classification_verdict(scored, correct, seed=config.train.seed, cost=cost, run_key="fine_tuned")
            return {**found, "split": "validation"} if found else None
        return perplexity_run_verdict(metrics["validation"], titles, cost=cost, seed=config.train.seed)

    return finish_training(run, config, "sft", data.manifest, metrics, method=method, model=model,
                           tokenizer=tokenizer, extra=extra, verdict=verdict,
                           tracking=session.tracking)


def _contrasting_samples(config, method, model, tokenizer, template, held_out, before, after, eos_ids):
    """Greedy replies of the tuned model and of its base (adapters off) to the held-out prompts
    whose reply likelihood changed most per token, either way."""
    from ftune.data.masking import encode_prompt
    from ftune.eval.baselines import EXAMPLE_LOSSES
    from ftune.eval.generative import generate_replies

    count = config.generate.samples
    if count <= 0 or EXAMPLE_LOSSES not in before["scores"]:  # none asked, or a base measured by an older ftune
        return []
    per_token = [[nll / max(tokens, 1) for nll, tokens in scores["scores"][EXAMPLE_LOSSES]]
                 for scores in (before, after)]
    change = [b - a for b, a in zip(*per_token)]
    chosen = [i for i in sorted(range(len(change)), key=lambda i: -abs(change[i]))
              if prompt_turns(held_out[i]) is not None][:count]
    if not chosen:
        return []
    prompts = [prompt_turns(held_out[i]) for i in chosen]
    g = config.generate
    ids = [encode_prompt(p, template, tokenizer) for p in prompts]
    tuned = generate_replies(model, tokenizer, ids, max_new_tokens=g.max_new_tokens, temperature=0.0, top_p=1.0,
                             eos_ids=eos_ids)
    with method.disabled(model):
        base = generate_replies(model, tokenizer, ids, max_new_tokens=g.max_new_tokens, temperature=0.0, top_p=1.0,
                                eos_ids=eos_ids)
    for scores, replies in ((before["scores"], base), (after["scores"], tuned)):
        scores["samples_ended_with_eos"] = sum(r["ended_with_eos"] for r in replies)
        scores["samples"] = len(replies)
    return [{"prompt": [m.__dict__ for m in p], "before": b, "after": a,
             "loss_per_token": {"before": round(per_token[0][i], 4), "after": round(per_token[1][i], 4)}}
            for i, p, b, a in zip(chosen, prompts, base, tuned)]


def _is_labeled_data(config: Config) -> bool:
    from ftune.training.objective import data_format

    return data_format(config) == "classification"


def _measure(config, model, tokenizer, template, items, collator, prompts, eos_ids, echo, when: str) -> dict[str, Any]:
    from ftune.data.masking import encode_prompt
    from ftune.eval.generative import generate_replies, response_loss

    import time

    started = time.monotonic()
    replies = (f" and its greedy replies to {len(prompts)} held-out prompt{'s' if len(prompts) != 1 else ''} "
               f"(up to {config.generate.max_new_tokens} new tokens each; generate.samples=0 skips them)"
               if prompts else "")
    echo(f"ftune: measuring the model {when} training: response loss on {len(items):,} held-out examples{replies}"
         + ("; the same is measured after training" if when == "before" else ""))
    scores = response_loss(model, items, collator, batch_size=_scoring_batch_size(config))
    samples = []
    if prompts:
        g = config.generate
        samples = generate_replies(model, tokenizer, [encode_prompt(p, template, tokenizer) for p in prompts],
                                   max_new_tokens=g.max_new_tokens, temperature=0.0, top_p=1.0, eos_ids=eos_ids)
        scores["samples_ended_with_eos"] = sum(s["ended_with_eos"] for s in samples)
        scores["samples"] = len(samples)
    echo(f"ftune: measured {when} training in {time.monotonic() - started:.0f} s: perplexity {scores['perplexity']:.2f}")
    return {"scores": scores, "samples": samples}


def _scoring_batch_size(config) -> int:
    # Scoring keeps (batch x length x vocabulary) logits: small batches for language models.
    return max(1, min(config.train.eval_batch_size, config.train.batch_size, 8))
