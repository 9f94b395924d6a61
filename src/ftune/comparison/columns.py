"""What a comparison reports for each task, and how its numbers are written."""

from __future__ import annotations

import math
from typing import Any

# The quality columns of each task, best first; the first is the one the plots rank by.
TASK_METRICS = {"classification": ("accuracy", "f1"), "sft": ("perplexity",),
                "dpo": ("preference_accuracy", "reward_margin")}
METRIC_TITLES = {"accuracy": "accuracy", "f1": "macro-F1", "perplexity": "perplexity",
                 "preference_accuracy": "preference accuracy", "reward_margin": "reward margin"}
LOWER_IS_BETTER = {"perplexity"}


def finite_number(value: Any) -> float | None:
    """A finite float, or None for anything missing, NaN or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def human_count(n: float) -> str:
    """1840000 -> '1.84M', 12345 -> '12.3K', 512 -> '512'."""
    for suffix in ("", "K", "M", "B"):
        if abs(n) < 999.5 or suffix == "B":
            return f"{n:.0f}" if not suffix else f"{n:.3g}{suffix}"
        n /= 1000
    raise AssertionError("unreachable")
