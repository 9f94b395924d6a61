"""The verdict machinery on synthetic cases whose right answer is known: an interval's coverage,
McNemar's exact p-value by hand, identical predictions, a known effect, a known null; for
accuracy, for perplexity (lower is better) and for preference pairs (ties count half)."""

from __future__ import annotations

import numpy as np
import pytest

from ftune.eval.baselines import EXAMPLE_LOSSES, LIKELIHOOD_WINS, PAIR_WINS
from ftune.eval.verdict import (bootstrap_interval, compare_correct, compare_perplexity, mcnemar_p_value,
                                paired_difference, perplexity_interval, perplexity_run_verdict,
                                preference_run_verdict, verdict_sentence)


def test_the_interval_covers_the_true_accuracy_at_about_its_nominal_rate():
    rng = np.random.default_rng(0)
    truth, repetitions = 0.8, 200
    covered = 0
    for repetition in range(repetitions):
        sample = rng.random(200) < truth
        low, high = bootstrap_interval(sample.astype(float), seed=repetition)
        covered += low <= truth <= high
    assert 0.90 <= covered / repetitions <= 0.99  # nominal 0.95 (percentile bootstrap runs a little narrow)


def test_mcnemar_is_exact_on_a_hand_computed_case():
    # 1 example only the run got right, 9 only the baseline: p = 2 * P(X <= 1 | n=10, 1/2) = 2 * 11 / 1024
    run = [True] * 1 + [False] * 9 + [True] * 5 + [False] * 3
    baseline = [False] * 1 + [True] * 9 + [True] * 5 + [False] * 3
    assert mcnemar_p_value(run, baseline) == pytest.approx(22 / 1024)
    assert mcnemar_p_value(run, run) == 1.0


def test_identical_predictions_are_not_distinguishable():
    correct = [True, False, True, True, False] * 40
    comparison = compare_correct("TF-IDF", correct, correct)
    assert (comparison.difference, comparison.low, comparison.high) == (0.0, 0.0, 0.0)
    assert comparison.outcome == "indistinguishable"
    sentence = verdict_sentence(comparison)
    assert sentence.startswith("fine-tuning is not distinguishable from TF-IDF") and "consider TF-IDF instead" in sentence


def test_a_known_effect_is_called_a_win_with_its_interval_and_cost():
    rng = np.random.default_rng(1)
    n = 500
    run = rng.random(n) < 0.9
    baseline = rng.random(n) < 0.6
    comparison = compare_correct("TF-IDF + logistic regression", run, baseline)
    difference, low, high = paired_difference(run.astype(float), baseline.astype(float))
    assert comparison.outcome == "better" and comparison.p_value < 1e-6
    assert low * 100 == pytest.approx(comparison.low) and 20 < difference * 100 < 40
    sentence = verdict_sentence(comparison, cost={"training_minutes": 9.5, "trainable_parameters": 296_452,
                                                  "ships_mb": 1.2})
    assert sentence.startswith("fine-tuning beat the best alternative (TF-IDF + logistic regression, 0.")
    assert "worth it" in sentence and "9.5 min of training, 296,452 trainable parameters, 1.2 MB shipped" in sentence
    worse = verdict_sentence(compare_correct("TF-IDF", baseline, run))
    assert "did worse than TF-IDF" in worse and "use TF-IDF instead" in worse


def test_under_a_known_null_a_difference_is_claimed_about_as_rarely_as_the_level_allows():
    rng = np.random.default_rng(2)
    claimed = 0
    for repetition in range(100):
        run, baseline = rng.random(300) < 0.7, rng.random(300) < 0.7
        claimed += compare_correct("TF-IDF", run, baseline, seed=repetition, resamples=500).outcome != "indistinguishable"
    assert claimed <= 12  # nominal 5 in 100


def _losses(rng, n, mean_nll_per_token):
    tokens = rng.integers(5, 60, size=n)
    return np.stack([rng.gamma(4.0, mean_nll_per_token / 4.0, size=n) * tokens, tokens], axis=1)


def test_the_perplexity_interval_covers_the_true_perplexity_at_about_its_nominal_rate():
    rng = np.random.default_rng(3)
    truth, covered, repetitions = float(np.exp(2.0)), 0, 200
    for repetition in range(repetitions):
        low, high = perplexity_interval(_losses(rng, 150, 2.0), seed=repetition, resamples=400)
        covered += low <= truth <= high
    assert 0.88 <= covered / repetitions <= 0.99  # nominal 0.95


def test_a_lower_perplexity_is_a_win_and_the_same_losses_are_indistinguishable():
    rng = np.random.default_rng(4)
    base = _losses(rng, 300, 2.0)
    tuned = base.copy()
    tuned[:, 0] *= 0.8  # every reply 20% less surprising
    comparison = compare_perplexity("few-shot prompting", tuned, base)
    assert comparison.outcome == "better" and comparison.high < 0
    assert comparison.run_score == pytest.approx(np.exp(0.8 * base[:, 0].sum() / base[:, 1].sum()))
    sentence = verdict_sentence(comparison)
    assert sentence.startswith(f"fine-tuning lowered held-out response perplexity to {comparison.run_score:.2f}, "
                               f"{-comparison.difference:.2f} below the best alternative (few-shot prompting, ")
    assert "worth it" in sentence
    assert compare_perplexity("few-shot prompting", base, tuned).outcome == "worse"
    same = compare_perplexity("zero-shot", base, base)
    assert same.outcome == "indistinguishable" and same.low == same.high == 0.0


def test_the_perplexity_verdict_picks_the_strongest_alternative_and_compares_every_one():
    rng = np.random.default_rng(5)
    zero = _losses(rng, 200, 2.2)
    retrieved, tuned = zero.copy(), zero.copy()
    retrieved[:, 0] *= 0.85
    tuned[:, 0] *= 0.84  # barely better than retrieval: not a claim the interval allows
    entries = {"before": {EXAMPLE_LOSSES: zero.tolist()}, "base_retrieval_4_shot": {EXAMPLE_LOSSES: retrieved.tolist()},
               "after": {EXAMPLE_LOSSES: tuned.tolist()}}
    verdict = perplexity_run_verdict(entries, {"base_retrieval_4_shot": "retrieval-augmented 4-shot"})
    assert verdict["baseline_key"] == "base_retrieval_4_shot" and set(verdict["against"]) == {
        "before", "base_retrieval_4_shot"}
    assert verdict["against"]["before"]["outcome"] == "better"
    # a 1% relative gain on 200 examples whose losses vary a lot: the wording must not claim it
    if verdict["outcome"] == "indistinguishable":
        assert "consider retrieval-augmented 4-shot instead" in verdict["text"]


def test_preference_verdict_is_paired_with_ties_counted_half():
    before = {PAIR_WINS: [0.5] * 400, LIKELIHOOD_WINS: [1.0, 0.0] * 200}
    strong = {PAIR_WINS: [1.0] * 300 + [0.0] * 100, LIKELIHOOD_WINS: [1.0, 0.0] * 200}
    verdict = preference_run_verdict(before, strong)
    assert verdict["outcome"] == "better" and verdict["p_value"] is None  # ties: no McNemar
    assert verdict["difference"] == pytest.approx(25.0) and verdict["interval"][0] > 20
    assert "preference tuning beat the best alternative (the base model, 0.500)" in verdict["text"]
    assert verdict["against"]["likelihood_accuracy"]["outcome"] == "indistinguishable"
    chance = {PAIR_WINS: [1.0, 0.0] * 200, LIKELIHOOD_WINS: [1.0, 0.0] * 200}
    assert preference_run_verdict(before, chance)["outcome"] == "indistinguishable"
