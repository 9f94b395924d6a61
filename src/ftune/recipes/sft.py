"""Supervised fine-tuning of a decoder LLM on instructions, chats or plain text.

Loss falls on the response tokens only (and on the end-of-turn token, so the model learns to
stop); batches group sequences of similar length and pad dynamically. Held-out response loss,
perplexity and generation samples are measured before and after training.
"""

from __future__ import annotations

from typing import Any

from ftune.config import Config
from ftune.training.loop import TrainedRun


def sample_prompts(examples, count: int) -> list[list[Any]]:
    """The prompt turns of the first ``count`` held-out conversations (fixed, so before and
    after are comparable)."""
    from ftune.data.conversation import Conversation, PreferencePair

    prompts = []
    if count <= 0:  # generate.samples=0: no samples (not every held-out prompt)
        return prompts
    for example in examples:
        if isinstance(example, Conversation):
            last = max(i for i, m in enumerate(example.messages) if m.role == "assistant")
            prompts.append(example.messages[:last])
        elif isinstance(example, PreferencePair):
            prompts.append(list(example.prompt))
        if len(prompts) == count:
            break
    return prompts


def train_sft(config: Config, echo=print, resume=None) -> TrainedRun:
    from ftune.data.collate import PaddedCausalCollator
    from ftune.data.encode import EncodedDataset, encode_examples, stop_token_ids
    from ftune.data.prepare_generative import build_generative_data
    from ftune.methods import build_method
    from ftune.training.loop import build_trainer, open_run, run_training, start_generative_run
    from ftune.training.memory_fit import BatchShape, fit_to_memory
    from ftune.recipes.finish import finish_training
    from ftune.training.trainer import ResponseLossTrainer

    method = build_method(config.method.name, config.method.options)
    labeled = None
    if _is_labeled_data(config):
        from ftune.recipes.labeled_task import labeled_task_as_chat

        data, labeled = labeled_task_as_chat(config)
    else:
        data = build_generative_data(config.data, config.train.seed)
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
    prompts = sample_prompts(data.validation, config.generate.samples)

    def measure_base() -> dict[str, Any]:
        before = _measure(config, prepared.model, tokenizer, template, validation_items, collator, prompts, eos_ids,
                          echo, "before")
        label_scores = {}
        if labeled:
            echo("ftune: zero- and few-shot prompting of the base model ...")
            label_scores = labeled.base_scores(config, prepared.model, tokenizer, template)
        return {"before": before, "labels": label_scores}

    base = run.measured_once("before.json", measure_base)
    before, label_scores = base["before"], base["labels"]

    training = run_training(session, config, echo)
    after = _measure(config, session.trainer.model, tokenizer, template, validation_items, collator, prompts,
                     eos_ids, echo, "after")

    metrics = {"validation": {"before": before["scores"], "after": after["scores"]}, "training": training}
    if labeled:
        label_scores["fine_tuned"] = labeled.accuracy(session.trainer.model, tokenizer, template)
        metrics["validation"]["labels"] = label_scores
    run.write_json("samples.json", [
        {"prompt": [m.__dict__ for m in p], "before": b, "after": a}
        for p, b, a in zip(prompts, before["samples"], after["samples"])
    ])
    extra = {"template": template.name}
    if labeled:  # lets `ftune eval RUN --data labeled.csv` score labels the same way
        extra.update({"labels": labeled.data.label_names, "label_words": labeled.words,
                      "instruction": labeled.instruction})
    return finish_training(run, config, "sft", data.manifest, metrics, method=method, model=session.trainer.model,
                           tokenizer=tokenizer, extra=extra)


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
    echo(f"ftune: measured {when} training in {time.monotonic() - started:.0f} s")
    return {"scores": scores, "samples": samples}


def _scoring_batch_size(config) -> int:
    # Scoring keeps (batch x length x vocabulary) logits: small batches for language models.
    return max(1, min(config.train.eval_batch_size, config.train.batch_size, 8))
