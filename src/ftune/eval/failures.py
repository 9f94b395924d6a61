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
