"""Keep a held-out split honest: find rows whose text lies inside another split's rows.

Many data sets repeat themselves: exact duplicates, or phrases cut from longer rows (SST-2
holds every sentence together with its sub-phrases). A random split then puts the same words
on both sides, and the held-out score measures memory, which flatters bag-of-words baselines
most. Containment is checked on lowercased word sequences, so "The film ." inside
"I liked the film ." counts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

PREFIX = 3  # rows are indexed by their first words; shorter rows by all of theirs


def words_of(text: str) -> tuple[str, ...]:
    return tuple(text.lower().split())


def rows_contained_in(needles: Sequence[str], haystacks: Sequence[str]) -> set[int]:
    """Indices of ``needles`` whose word sequence occurs contiguously inside some haystack."""
    index: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
    for i, text in enumerate(needles):
        words = words_of(text)
        if words:
            index[words[:PREFIX]].append((i, words))
    key_lengths = sorted({len(key) for key in index})
    found: set[int] = set()
    for text in haystacks:
        words = words_of(text)
        for start in range(len(words)):
            for k in key_lengths:
                if start + k > len(words):
                    break
                for i, needle in index.get(words[start:start + k], ()):
                    if i not in found and words[start:start + len(needle)] == needle:
                        found.add(i)
    return found


def separate_splits(train_texts: Sequence[str], validation_texts: Sequence[str]) -> tuple[list[int], list[int]]:
    """(kept train indices, kept validation indices) with no text of one inside the other.

    Validation rows that occur inside a training row are dropped first (the model has seen
    them); then training rows that occur inside a remaining validation row are dropped.
    """
    leaked_validation = rows_contained_in(validation_texts, train_texts)
    kept_validation = [i for i in range(len(validation_texts)) if i not in leaked_validation]
    leaked_train = rows_contained_in(train_texts, [validation_texts[i] for i in kept_validation])
    kept_train = [i for i in range(len(train_texts)) if i not in leaked_train]
    return kept_train, kept_validation
