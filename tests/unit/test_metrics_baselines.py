"""Metrics agree with hand computation; baselines behave as their names promise."""

from __future__ import annotations

import pytest

from ftune.eval.baselines import majority_baseline, tfidf_baseline
from ftune.eval.metrics import classification_metrics, format_confusion_matrix


def test_metrics_by_hand():
    m = classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], ["neg", "pos"], loss=0.5)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # neg: precision 1/2, recall 1/2; pos: precision 2/3, recall 2/3
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["recall"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["confusion_matrix"]["rows_true_columns_predicted"] == [[1, 1], [1, 2]]
    assert m["per_class"]["pos"]["support"] == 3 and m["n"] == 5 and m["loss"] == 0.5
    table = format_confusion_matrix(m)
    assert table.splitlines()[1].split() == ["neg", "1", "1"]


def test_majority_predicts_the_most_frequent_training_label():
    m = majority_baseline([1, 1, 0], [0, 1, 1, 1], ["a", "b"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["per_class"]["a"]["recall"] == 0.0


@pytest.mark.parametrize("model", ["logreg", "random_forest"])
def test_tfidf_learns_word_evidence(model):
    train = ["good film", "great film", "good book", "bad film", "awful book", "bad book"] * 5
    labels = [1, 1, 1, 0, 0, 0] * 5
    m = tfidf_baseline(train, labels, ["good story", "bad story"], [1, 0], ["neg", "pos"], model=model)
    assert m["accuracy"] == 1.0
