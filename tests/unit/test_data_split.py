"""stratified_split and subsample_stratified: proportions, coverage, determinism."""

from collections import Counter

import pytest

from ftune.data.split import stratified_split, subsample_stratified
from ftune.errors import DataError

# 600 "a", 300 "b", 90 "c", 10 "d", interleaved like a real file.
LABELS = [x for i in range(100) for x in ["a"] * 6 + ["b"] * 3 + ["d" if i % 10 == 0 else "c"]]


def test_fixture_labels():
    assert Counter(LABELS) == {"a": 600, "b": 300, "c": 90, "d": 10}


def test_split_is_disjoint_covers_all_and_keeps_proportions():
    train, validation = stratified_split(LABELS, 0.1, seed=13)
    assert len(validation) == 100 and len(train) == 900
    assert set(train).isdisjoint(validation)
    assert sorted(train + validation) == list(range(1000))
    assert train == sorted(train) and validation == sorted(validation)
    assert Counter(LABELS[i] for i in validation) == {"a": 60, "b": 30, "c": 9, "d": 1}


def test_split_is_deterministic_and_seeded():
    assert stratified_split(LABELS, 0.2, seed=1) == stratified_split(LABELS, 0.2, seed=1)
    assert stratified_split(LABELS, 0.2, seed=1)[1] != stratified_split(LABELS, 0.2, seed=2)[1]


def test_every_class_with_two_rows_gets_a_validation_row():
    labels = ["big"] * 96 + ["pair"] * 2 + ["solo"] + ["trio"] * 3
    train, validation = stratified_split(labels, 0.05, seed=0)
    counts = Counter(labels[i] for i in validation)
    assert len(validation) == 5  # round(0.05 * 102)
    assert counts["pair"] == 1 and counts["trio"] == 1 and counts["big"] == 3
    assert labels.index("solo") in train  # a single row stays in train
    assert Counter(labels[i] for i in train)["pair"] == 1  # and every class keeps a train row


def test_tiny_inputs():
    # a tiny file holds out one row of every label, whatever the fraction, so the held-out
    # split measures each label and the majority baseline is not trivially 0 or 1
    train, validation = stratified_split(["a", "b", "a", "b"], 0.01, seed=0)
    assert sorted(["a", "b", "a", "b"][i] for i in validation) == ["a", "b"] and len(train) == 2
    ten = ["positive"] * 5 + ["negative"] * 5
    assert sorted(ten[i] for i in stratified_split(ten, 0.1, seed=3)[1]) == ["negative", "positive"]
    assert len(stratified_split(["a"] * 5 + ["b"], 0.01, seed=0)[1]) == 1  # "b" has one row: it trains
    with pytest.raises(DataError, match="every label has a single row"):
        stratified_split(["a", "b", "c"], 0.5, seed=0)
    with pytest.raises(ValueError):
        stratified_split(LABELS, 1.0, seed=0)


def test_subsample_keeps_file_order_and_proportions():
    kept = subsample_stratified(LABELS, 200, seed=5)
    assert len(kept) == 200 and kept == sorted(kept) and len(set(kept)) == 200
    assert Counter(LABELS[i] for i in kept) == {"a": 120, "b": 60, "c": 18, "d": 2}
    assert kept == subsample_stratified(LABELS, 200, seed=5)
    assert kept != subsample_stratified(LABELS, 200, seed=6)


def test_subsample_keeps_rare_classes_and_returns_all_when_small():
    labels = ["a"] * 99 + ["rare"]
    kept = subsample_stratified(labels, 10, seed=0)
    assert len(kept) == 10 and 99 in kept  # floor(10 * 1/100) = 0, but the class survives
    assert subsample_stratified(labels, 500, seed=0) == list(range(100))
