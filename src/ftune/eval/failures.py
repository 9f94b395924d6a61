"""The held-out examples a classifier got wrong, most confident first: what to look at, and
what to add to the training data ("analyze failure cases and add targeted examples")."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence


def misclassified(texts: Sequence[str], true_ids: Sequence[int], predicted_ids: Sequence[int],
                  confidences: Sequence[float], label_names: Sequence[str],
                  lines: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """One record per wrong prediction, the most confident mistakes first."""
    wrong = [i for i, (t, p) in enumerate(zip(true_ids, predicted_ids)) if t != p]
    wrong.sort(key=lambda i: -confidences[i])
    return [{"text": texts[i], "true": label_names[true_ids[i]], "predicted": label_names[predicted_ids[i]],
             "confidence": round(float(confidences[i]), 4), **({"line": lines[i]} if lines else {})} for i in wrong]


def top_confusions(errors: Sequence[dict[str, Any]], count: int = 3) -> list[tuple[str, str, int]]:
    """(true, predicted, how many) for the most frequent kinds of mistake."""
    pairs = Counter((e["true"], e["predicted"]) for e in errors)
    return [(t, p, n) for (t, p), n in pairs.most_common(count)]


def worst_replies(examples: Sequence, example_losses: Sequence[Sequence[float]], count: int) -> list[dict[str, Any]]:
    """The held-out examples whose reference replies the model finds least likely per token."""
    from ftune.data.conversation import Conversation

    order = sorted(range(len(example_losses)), key=lambda i: -example_losses[i][0] / max(example_losses[i][1], 1))
    found = []
    for i in order[:count]:
        example = examples[i]
        if isinstance(example, Conversation):
            last = max(j for j, m in enumerate(example.messages) if m.role == "assistant")
            shown = {"prompt": example.messages[last - 1].content if last else "",
                     "reply": example.messages[last].content}
        else:
            shown = {"text": getattr(example, "text", str(example))}
        found.append({**shown, "loss_per_token": round(example_losses[i][0] / max(example_losses[i][1], 1), 4),
                      "tokens": int(example_losses[i][1])})
    return found


def worst_pairs(pairs: Sequence, margins: Sequence[float], count: int) -> list[dict[str, Any]]:
    """The preference pairs whose rejected reply the model prefers most (lowest reward margin)."""
    order = sorted(range(len(margins)), key=lambda i: margins[i])
    return [{"prompt": pairs[i].prompt[-1].content if pairs[i].prompt else "", "chosen": pairs[i].chosen,
             "rejected": pairs[i].rejected, "reward_margin": round(margins[i], 4)} for i in order[:count]]
