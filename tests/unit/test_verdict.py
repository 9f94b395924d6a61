"""The verdict machinery on synthetic cases whose right answer is known: an interval's coverage,
McNemar's exact p-value by hand, identical predictions, a known effect, a known null."""

from __future__ import annotations

import numpy as np
import pytest

from ftune.eval.verdict import (bootstrap_interval, compare_correct, mcnemar_p_value, paired_difference,
                                verdict_sentence)


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
