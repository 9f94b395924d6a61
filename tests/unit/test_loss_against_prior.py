"""A classifier whose training loss ends no lower than predicting the label frequencies has
learned nothing from the texts, and the run says so."""

from __future__ import annotations

import math

import pytest

from ftune.recipes.classify import training_loss_against_prior


def _log(losses):
    return [{"loss": value, "step": i} for i, value in enumerate(losses)] + [{"eval_loss": 0.1, "step": 99}]


def test_a_loss_that_stays_at_the_label_prior_has_not_learned():
    labels = [0, 1] * 20  # balanced: the prior's loss is ln 2
    result = training_loss_against_prior(_log([0.70, 0.69, 0.693, 0.694, 0.693]), labels)
    assert result["prior_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert result["final_training_loss"] == pytest.approx(0.6933, abs=1e-4)  # the last three
    assert result["learned_beyond_prior"] is False


def test_a_falling_loss_has_learned():
    result = training_loss_against_prior(_log([0.69, 0.5, 0.3, 0.1, 0.05, 0.02]), [0, 1] * 20)
    assert result["learned_beyond_prior"] is True and result["final_training_loss"] < 0.1


def test_the_prior_follows_the_label_frequencies():
    labels = [0] * 36 + [1] * 4  # 90 / 10: the prior's loss is 0.325, far below ln 2
    prior = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    stuck_on_the_majority = training_loss_against_prior(_log([0.33, 0.325, 0.326]), labels)
    assert stuck_on_the_majority["prior_loss"] == pytest.approx(prior, abs=1e-4)
    assert stuck_on_the_majority["learned_beyond_prior"] is False
    assert training_loss_against_prior(_log([0.2, 0.1, 0.05]), labels)["learned_beyond_prior"] is True


def test_nothing_logged_is_not_called_a_failure():
    result = training_loss_against_prior([{"eval_loss": 0.5}], [0, 1])
    assert result["final_training_loss"] is None and result["learned_beyond_prior"] is True
