"""Whether fine-tuning was worth it, said no more strongly than the held-out data allow.

One module for every report (``ftune train``, the model card, and later ``ftune eval`` and
``ftune compare``): seeded bootstrap intervals on held-out metrics, a paired bootstrap of the
difference between the run and a baseline on the same examples, McNemar's exact test for two
classifiers, and the one-sentence verdict whose wording follows the interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

LEVEL = 0.95
RESAMPLES = 1000


def bootstrap_interval(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-example ``values`` (1/0 for accuracy)."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 100):  # in blocks: 100 x n indices at a time, never resamples x n
        block = min(100, resamples - start)
        means[start:start + block] = data[rng.integers(0, data.size, size=(block, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(run: Sequence[float], baseline: Sequence[float], *, resamples: int = RESAMPLES,
                      seed: int = 0, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean of run - baseline, interval low, interval high), resampling examples in pairs."""
    import numpy as np

    a, b = np.asarray(run, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same examples: {a.shape} against {b.shape}")
    difference = a - b
    low, high = bootstrap_interval(difference, resamples=resamples, seed=seed, level=level)
    return float(difference.mean()), low, high


def mcnemar_p_value(run_correct: Sequence[bool], baseline_correct: Sequence[bool]) -> float:
    """McNemar's exact test: two-sided binomial p-value on the examples exactly one got right."""
    from scipy.stats import binomtest

    only_run = sum(1 for a, b in zip(run_correct, baseline_correct) if a and not b)
    only_baseline = sum(1 for a, b in zip(run_correct, baseline_correct) if b and not a)
    if only_run + only_baseline == 0:
        return 1.0
    return float(binomtest(min(only_run, only_baseline), only_run + only_baseline, 0.5).pvalue)


@dataclass
class Comparison:
    """The run against one alternative on the same held-out examples, in points (x100)."""

    alternative: str
    alternative_score: float
    run_score: float
    difference: float  # points
    low: float  # points
    high: float  # points
    p_value: float | None = None  # McNemar, for classifiers

    @property
    def outcome(self) -> str:
        """better | worse | indistinguishable: what the interval allows, nothing more."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "indistinguishable"

    def as_dict(self) -> dict[str, Any]:
        return {"alternative": self.alternative, "alternative_score": self.alternative_score,
                "run_score": self.run_score, "difference_points": round(self.difference, 2),
                "interval_points": [round(self.low, 2), round(self.high, 2)], "level": LEVEL,
                "p_value": self.p_value, "outcome": self.outcome}


def compare_correct(alternative: str, run_correct: Sequence[bool], alternative_correct: Sequence[bool], *,
                    seed: int = 0, resamples: int = RESAMPLES) -> Comparison:
    """The run's accuracy against an alternative's, on the same examples (paired bootstrap, McNemar)."""
    run = [float(c) for c in run_correct]
    other = [float(c) for c in alternative_correct]
    difference, low, high = paired_difference(run, other, seed=seed, resamples=resamples)
    return Comparison(alternative, sum(other) / len(other), sum(run) / len(run), difference * 100, low * 100,
                      high * 100, mcnemar_p_value(run_correct, alternative_correct))


def verdict_sentence(comparison: Comparison, *, metric: str = "accuracy", what: str = "fine-tuning",
                     cost: dict[str, Any] | None = None) -> str:
    """One sentence whose claim follows the interval, with the cost beside the gain."""
    c = comparison
    shown = f"{c.alternative}, {c.alternative_score:.3f}"
    interval = f"95% CI {c.low:+.1f} to {c.high:+.1f}"
    if c.outcome == "better":
        text = (f"{what} beat the best alternative ({shown}) by {c.difference:.1f} points of {metric} "
                f"({interval}): worth it")
    elif c.outcome == "worse":
        text = (f"{what} did worse than {c.alternative} ({c.alternative_score:.3f}) by {-c.difference:.1f} points "
                f"of {metric} ({interval}): use {c.alternative} instead")
    else:
        text = (f"{what} is not distinguishable from {c.alternative} ({c.alternative_score:.3f}; difference "
                f"{c.difference:+.1f} points of {metric}, {interval}): consider {c.alternative} instead")
    return text + (f"; cost: {describe_cost(cost)}" if cost else "")


def describe_cost(cost: dict[str, Any]) -> str:
    parts = []
    if cost.get("training_minutes") is not None:
        parts.append(f"{cost['training_minutes']:.1f} min of training")
    if cost.get("trainable_parameters") is not None:
        parts.append(f"{cost['trainable_parameters']:,} trainable parameters")
    if cost.get("ships_mb") is not None:
        parts.append(f"{cost['ships_mb']:,.1f} MB shipped")
    return ", ".join(parts)


def classification_verdict(scores: dict[str, dict[str, Any]], correct: dict[str, Sequence[bool]], *,
                           seed: int = 0, cost: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The run (``correct["model"]``) against its best baseline by accuracy on one split; None
    without baselines. ``scores`` holds each entry's metrics, ``correct`` its per-example hits."""
    alternatives = [name for name in correct if name != "model"]
    if "model" not in correct or not alternatives:
        return None
    best = max(alternatives, key=lambda name: scores[name]["accuracy"])
    title = scores[best].get("title", best)
    comparison = compare_correct(title, correct["model"], correct[best], seed=seed)
    return {"text": verdict_sentence(comparison, cost=cost), **comparison.as_dict(), "baseline_key": best}


def accuracy_interval(correct: Sequence[bool], *, seed: int = 0) -> list[float]:
    low, high = bootstrap_interval([float(c) for c in correct], seed=seed)
    return [round(low, 4), round(high, 4)]


def with_intervals(split_scores: dict[str, dict[str, Any]], true_ids: Sequence[int], *, seed: int = 0) -> None:
    """Add ``accuracy_ci`` (95% bootstrap) to every entry of a split that kept its predictions."""
    from ftune.eval.baselines import PREDICTIONS

    for scores in split_scores.values():
        if PREDICTIONS in scores:
            scores["accuracy_ci"] = accuracy_interval([p == t for p, t in zip(scores[PREDICTIONS], true_ids)], seed=seed)


def classification_run_verdict(metrics: dict[str, Any], true_ids: dict[str, Sequence[int]], titles: dict[str, str],
                               *, cost: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any] | None:
    """The verdict of a classification run on its test split if it has one, else validation."""
    from ftune.eval.baselines import PREDICTIONS

    split = "test" if "test" in metrics and "test" in true_ids else "validation"
    entries = metrics.get(split, {})
    truth = true_ids.get(split)
    if truth is None:
        return None
    correct = {name: [p == t for p, t in zip(scores[PREDICTIONS], truth)]
               for name, scores in entries.items() if PREDICTIONS in scores}
    scored = {name: {**scores, "title": titles.get(name, name)} for name, scores in entries.items()}
    found = classification_verdict(scored, correct, seed=seed, cost=cost)
    return {**found, "split": split} if found else None
