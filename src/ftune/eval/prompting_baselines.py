"""The base model prompted with solved training examples, scored like the tuned model: the
fixed few-shot and retrieval-augmented baselines of an SFT run (response perplexity)."""

from __future__ import annotations

from typing import Any, Sequence


def few_shot_key(k: int) -> str:
    return f"base_{k}_shot"


def retrieval_key(k: int) -> str:
    return f"base_retrieval_{k}_shot"


def prompting_baselines(config, model, tokenizer, template, train: Sequence, held_out: Sequence, collator,
                        batch_size: int, echo=print) -> dict[str, dict[str, Any]]:
    """Response loss of ``model`` (the base) on the held-out examples after ``eval.few_shot``
    fixed training examples, and after the most similar ones; keys by ``few_shot_key`` and
    ``retrieval_key``. Empty for plain text, or when neither baseline is chosen."""
    import time

    from ftune.eval.demonstrations import (demonstrated_items, fixed_demonstrations, prompt_text,
                                           retrieved_demonstrations)
    from ftune.eval.generative import response_loss

    k, chosen = config.eval.few_shot, config.eval.chosen_baselines()
    wanted = [kind for kind in ("few_shot", "retrieval") if kind in chosen]
    if k <= 0 or not wanted or not any(prompt_text(example) is not None for example in held_out):
        return {}
    found: dict[str, dict[str, Any]] = {}
    for kind in wanted:
        started = time.monotonic()
        if kind == "few_shot":
            key, shown = few_shot_key(k), f"the same {k} training examples before every prompt"
            rows = [fixed_demonstrations(train, k, config.train.seed)] * len(held_out)
        else:
            key, shown = retrieval_key(k), f"the {k} training examples most similar to each prompt ({config.eval.retrieval})"
            echo(f"ftune: finding the training examples nearest each held-out prompt ({config.eval.retrieval}) ...")
            rows = retrieved_demonstrations(config.eval.retrieval, train, held_out, k)
        demonstrated = demonstrated_items(held_out, train, rows, template, tokenizer, config.model.max_length)
        echo(f"ftune: scoring the base model with {shown} ...")
        found[key] = {**response_loss(model, demonstrated.items, collator, batch_size=batch_size),
                      **demonstrated.summary(k)}
        echo(f"ftune: {key}: perplexity {found[key]['perplexity']:.2f} "
             f"({demonstrated.summary(k)['mean_shots']} examples shown on average; "
             f"{time.monotonic() - started:.0f} s)")
    return found
