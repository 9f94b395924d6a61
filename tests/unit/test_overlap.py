"""Held-out rows never share their text with training rows (duplicates, sub-phrases)."""

from __future__ import annotations

from ftune.data.overlap import rows_contained_in, separate_splits


def test_containment_is_by_whole_words_and_case_insensitive():
    haystacks = ["I liked The Film a lot .", "a different story"]
    needles = ["the film", "film a lot .", "he film", "liked the film a lot . really", "story", "stories"]
    assert rows_contained_in(needles, haystacks) == {0, 1, 4}


def test_separate_splits_removes_leaks_in_both_directions():
    train = ["a gorgeous film", "gorgeous", "the plot is thin", "a warm and funny film about family"]
    validation = ["warm and funny", "the plot is thin and the jokes are stale", "an unrelated sentence"]
    kept_train, kept_validation = separate_splits(train, validation)
    # "warm and funny" sits inside a training row: dropped from validation.
    assert kept_validation == [1, 2]
    # "the plot is thin" sits inside a kept validation row: dropped from training.
    assert kept_train == [0, 1, 3]


def test_exact_duplicates_leave_the_validation_side():
    kept_train, kept_validation = separate_splits(["same text", "other"], ["Same  text", "new"])
    assert kept_validation == [1] and kept_train == [0, 1]
