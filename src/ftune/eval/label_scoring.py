"""Accuracy of a generative model on a labeled task, by the likelihood of each label's reply.

As lm-evaluation-harness does for SST-2: the prediction is the label whose reply (word plus
end-of-turn) is most likely after the prompt; no free text is parsed.
"""

from __future__ import annotations

from typing import Any


def label_accuracy(model, tokenizer, template, texts: list[str], label_ids: list[int], label_names: list[str],
                   words: list[str], instruction: str, shots=(), batch_size: int = 16,
                   shots_per_text=None) -> dict[str, Any]:
    """Classification metrics of ``model`` choosing among ``words``, with the predictions kept
    (``PREDICTIONS``); ``shots`` are earlier turns before every text, or ``shots_per_text[i]``
    before text i (retrieved examples)."""
    from ftune.data.labeled_chat import label_prompt
    from ftune.data.masking import encode_prompt
    import math

    from ftune.eval.baselines import CONFIDENCES, PREDICTIONS
    from ftune.eval.metrics import classification_metrics
    from ftune.eval.scoring import completion_logps

    end = template.end_of_turn or tokenizer.eos_token or ""
    replies = [tokenizer(word + end, add_special_tokens=False)["input_ids"] for word in words]
    before = shots_per_text if shots_per_text is not None else [shots] * len(texts)
    prompts = [encode_prompt([*turns, *label_prompt(text, instruction)], template, tokenizer)
               for text, turns in zip(texts, before)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scored = completion_logps(model, [(p, r) for p in prompts for r in replies], pad_id, batch_size,
                              progress="scoring labels")
    n = len(replies)
    predicted = [max(range(n), key=lambda k: scored[i * n + k][0]) for i in range(len(texts))]
    # the chosen label's share of the label replies' likelihood: how sure the choice was
    confidences = [1.0 / sum(math.exp(scored[i * n + k][0] - scored[i * n + predicted[i]][0]) for k in range(n))
                   for i in range(len(texts))]
    return {**classification_metrics(label_ids, predicted, label_names), PREDICTIONS: predicted,
            CONFIDENCES: confidences}
