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


@dataclass(frozen=True)
class Metric:
    """How a compared metric reads: its name, its direction, and the scale differences are shown in."""

    name: str
    higher_is_better: bool = True
    scale: float = 100.0  # accuracy: differences in points
    unit: str = "points of "  # put before the name: "3.1 points of accuracy"
    digits: int = 3  # for the scores themselves

    def amount(self, value: float) -> str:
        return f"{value:.1f} {self.unit}{self.name}" if self.unit else f"{value:.2f} {self.name}"


ACCURACY = Metric("accuracy")
PERPLEXITY = Metric("held-out response perplexity", higher_is_better=False, scale=1.0, unit="", digits=2)


@dataclass
class Comparison:
    """The run against one alternative on the same held-out examples: run - alternative, in the
    metric's scale (points for accuracy), with its paired 95% interval."""

    alternative: str
    alternative_score: float
    run_score: float
    difference: float
    low: float
    high: float
    p_value: float | None = None  # McNemar, for classifiers
    metric: Metric = ACCURACY

    @property
    def outcome(self) -> str:
        """better | worse | indistinguishable: what the interval allows, nothing more."""
        if self.low > 0:
            return "better" if self.metric.higher_is_better else "worse"
        if self.high < 0:
            return "worse" if self.metric.higher_is_better else "better"
        return "indistinguishable"

    def as_dict(self) -> dict[str, Any]:
        return {"alternative": self.alternative, "alternative_score": self.alternative_score,
                "run_score": self.run_score, "metric": self.metric.name,
                "difference": round(self.difference, 4), "interval": [round(self.low, 4), round(self.high, 4)],
                "difference_scale": "points (x100)" if self.metric.scale == 100 else "metric units",
                "level": LEVEL, "p_value": self.p_value, "outcome": self.outcome}


def compare_correct(alternative: str, run_correct: Sequence[float], alternative_correct: Sequence[float], *,
                    seed: int = 0, resamples: int = RESAMPLES, metric: Metric = ACCURACY) -> Comparison:
    """The run's accuracy against an alternative's, on the same examples (paired bootstrap, and
    McNemar when every score is a plain hit or miss). Scores may be 1 / 0.5 / 0 (a tie counts half)."""
    run = [float(c) for c in run_correct]
    other = [float(c) for c in alternative_correct]
    difference, low, high = paired_difference(run, other, seed=seed, resamples=resamples)
    binary = all(v in (0.0, 1.0) for v in run + other)
    return Comparison(alternative, sum(other) / len(other), sum(run) / len(run), difference * metric.scale,
                      low * metric.scale, high * metric.scale,
                      mcnemar_p_value([v == 1 for v in run], [v == 1 for v in other]) if binary else None, metric)


def perplexity_interval(example_losses: Sequence[Sequence[float]], *, seed: int = 0, resamples: int = RESAMPLES,
                        level: float = LEVEL) -> tuple[float, float]:
    """Bootstrap interval of the token-weighted perplexity, resampling examples: each of
    ``example_losses`` is one example's (summed negative log-likelihood, scored tokens)."""
    import numpy as np

    values = _ratio_resamples(np.asarray(example_losses, dtype=np.float64)[None], resamples, seed)[0]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def compare_perplexity(alternative: str, run_losses: Sequence[Sequence[float]],
                       alternative_losses: Sequence[Sequence[float]], *, seed: int = 0,
                       resamples: int = RESAMPLES) -> Comparison:
    """The run's held-out response perplexity against an alternative's on the same examples and
    tokens: the difference of perplexities under a paired bootstrap over examples."""
    import numpy as np

    both = np.asarray([run_losses, alternative_losses], dtype=np.float64)
    if both.ndim != 3 or both.shape[2] != 2:
        raise ValueError(f"per-example losses must be (nll, tokens) pairs for the same examples, got {both.shape}")
    run_score, other_score = (_perplexity(both[0]), _perplexity(both[1]))
    resampled = _ratio_resamples(both, resamples, seed)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(resampled[0] - resampled[1], [tail, 100 - tail])
    return Comparison(alternative, other_score, run_score, run_score - other_score, float(low), float(high),
                      metric=PERPLEXITY)


def _perplexity(losses) -> float:
    import math

    return math.exp(min(losses[:, 0].sum() / max(losses[:, 1].sum(), 1.0), 50.0))


def _ratio_resamples(losses, resamples: int, seed: int):
    """exp(sum nll / sum tokens) for ``resamples`` bootstrap draws of examples, the same draws for
    every model in ``losses`` (models x examples x 2): paired when there are several."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = losses.shape[1]
    values = np.empty((losses.shape[0], resamples))
    for start in range(0, resamples, 100):
        block = min(100, resamples - start)
        drawn = losses[:, rng.integers(0, n, size=(block, n))]  # models x block x n x 2
        sums = drawn.sum(axis=2)
        values[:, start:start + block] = np.exp(np.minimum(sums[..., 0] / np.maximum(sums[..., 1], 1.0), 50.0))
    return values


def verdict_sentence(comparison: Comparison, *, what: str = "fine-tuning",
                     cost: dict[str, Any] | None = None) -> str:
    """One sentence whose claim follows the interval, with the cost beside the gain."""
    c, m = comparison, comparison.metric
    shown = f"{c.alternative}, {c.alternative_score:.{m.digits}f}"
    interval = f"95% CI {c.low:+.{1 if m.unit else 2}f} to {c.high:+.{1 if m.unit else 2}f}"
    gain = abs(c.difference)
    if c.outcome == "better" and not m.higher_is_better:
        text = (f"{what} lowered {m.name} to {c.run_score:.{m.digits}f}, {gain:.2f} below the best alternative "
                f"({shown}; {interval}): worth it")
    elif c.outcome == "better":
        text = (f"{what} beat the best alternative ({shown}) by {m.amount(gain)} "
                f"(reaching {c.run_score:.{m.digits}f}; {interval}): worth it")
    elif c.outcome == "worse":
        text = (f"{what} did worse than {c.alternative} ({c.alternative_score:.{m.digits}f}) by {m.amount(gain)} "
                f"(reaching {c.run_score:.{m.digits}f}; {interval}): use {c.alternative} instead")
    else:
        sign = f"{c.difference:+.1f} {m.unit}{m.name}" if m.unit else f"{c.difference:+.2f} {m.name}"
        text = (f"{what} is not distinguishable from {c.alternative} ({c.alternative_score:.{m.digits}f}; "
                f"difference {sign}, {interval}): consider {c.alternative} instead")
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
                           seed: int = 0, cost: dict[str, Any] | None = None,
                           run_key: str = "model") -> dict[str, Any] | None:
    """The run (``correct[run_key]``) against its best baseline by accuracy on one split; None
    without baselines. ``scores`` holds each entry's metrics, ``correct`` its per-example hits."""
    alternatives = [name for name in correct if name != run_key]
    if run_key not in correct or not alternatives:
        return None
    comparisons = {name: compare_correct(scores[name].get("title", name), correct[run_key], correct[name], seed=seed)
                   for name in alternatives}
    best = max(alternatives, key=lambda name: scores[name]["accuracy"])
    return {"text": verdict_sentence(comparisons[best], cost=cost), **comparisons[best].as_dict(),
            "baseline_key": best, "against": {name: c.as_dict() for name, c in comparisons.items()}}


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


def with_perplexity_intervals(entries: dict[str, dict[str, Any]], *, seed: int = 0) -> None:
    """Add ``perplexity_ci`` (95% bootstrap over examples) to every entry that kept its losses."""
    from ftune.eval.baselines import EXAMPLE_LOSSES

    for scores in entries.values():
        if isinstance(scores, dict) and scores.get(EXAMPLE_LOSSES):
            scores["perplexity_ci"] = [round(v, 4) for v in perplexity_interval(scores[EXAMPLE_LOSSES], seed=seed)]


def perplexity_run_verdict(entries: dict[str, dict[str, Any]], titles: dict[str, str], *, run_key: str = "after",
                           cost: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any] | None:
    """The tuned model (``entries[run_key]``) against the alternative with the lowest held-out
    response perplexity, paired on the same examples; every other alternative is compared too."""
    from ftune.eval.baselines import EXAMPLE_LOSSES

    scored = {key: scores for key, scores in entries.items() if isinstance(scores, dict) and scores.get(EXAMPLE_LOSSES)}
    if run_key not in scored or len(scored) < 2:
        return None
    run = scored[run_key][EXAMPLE_LOSSES]
    comparisons = {key: compare_perplexity(titles.get(key, key), run, scores[EXAMPLE_LOSSES], seed=seed)
                   for key, scores in scored.items() if key != run_key and len(scores[EXAMPLE_LOSSES]) == len(run)}
    if not comparisons:
        return None
    best = min(comparisons, key=lambda key: comparisons[key].alternative_score)
    return {"text": verdict_sentence(comparisons[best], cost=cost), **comparisons[best].as_dict(),
            "baseline_key": best, "split": "validation",
            "against": {key: c.as_dict() for key, c in comparisons.items()}}


PREFERENCE_ACCURACY = Metric("held-out preference accuracy")
LIKELIHOOD_ACCURACY = Metric("likelihood accuracy")


def preference_run_verdict(before: dict[str, Any], after: dict[str, Any], *, cost: dict[str, Any] | None = None,
                           seed: int = 0) -> dict[str, Any] | None:
    """Preference accuracy after training against before (0.5 by construction: every implicit
    reward margin is 0), paired on the same pairs; likelihood accuracy, which the base model
    has on its own, compared the same way."""
    from ftune.eval.baselines import LIKELIHOOD_WINS, PAIR_WINS

    if not (before.get(PAIR_WINS) and after.get(PAIR_WINS)) or len(before[PAIR_WINS]) != len(after[PAIR_WINS]):
        return None
    comparison = compare_correct("the base model", after[PAIR_WINS], before[PAIR_WINS], seed=seed,
                                 metric=PREFERENCE_ACCURACY)
    likelihood = compare_correct("the base model", after[LIKELIHOOD_WINS], before[LIKELIHOOD_WINS], seed=seed,
                                 metric=LIKELIHOOD_ACCURACY)
    return {"text": verdict_sentence(comparison, what="preference tuning", cost=cost), **comparison.as_dict(),
            "baseline_key": "before", "split": "validation", "against": {"likelihood_accuracy": likelihood.as_dict()}}


def with_preference_intervals(scores: dict[str, Any], *, seed: int = 0) -> None:
    """``preference_accuracy_ci`` and ``likelihood_accuracy_ci`` from the per-pair wins."""
    from ftune.eval.baselines import LIKELIHOOD_WINS, PAIR_WINS

    for metric, key in (("preference_accuracy", PAIR_WINS), ("likelihood_accuracy", LIKELIHOOD_WINS)):
        if scores.get(key):
            scores[f"{metric}_ci"] = [round(v, 4) for v in bootstrap_interval(scores[key], seed=seed)]
