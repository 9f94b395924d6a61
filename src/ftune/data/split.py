"""Seeded, stratified index selection: a validation split and a `data.max_rows` subsample.

Written out rather than delegated to scikit-learn's `train_test_split(stratify=...)`: that one
refuses classes with a single row, does not promise every class a validation row, and its
choice of rows may change between releases, which would silently change a run's split.
Here each class is shuffled by its own `random.Random(f"{seed}/{label}")`, so the split depends
only on the labels, the fraction and the seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from ftune.errors import DataError


def stratified_split(
    labels: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split row indices into (train, validation), stratified by label, both sorted.

    The validation set has round(fraction * n) rows, and at least one per class with two or
    more rows (so a tiny file still measures every label, and majority is not trivially 0 or
    1); every class keeps at least one training row; a class with a single row stays in train.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    groups = _groups(labels)
    splittable = {label: rows for label, rows in groups.items() if len(rows) >= 2}
    capacity = sum(len(rows) - 1 for rows in splittable.values())
    if capacity == 0:
        raise DataError(
            f"cannot make a validation split from {len(labels)} row(s): every label has a "
            "single row, and each needs one to train on"
        )
    wanted = min(max(1, round(fraction * len(labels)), len(splittable)), capacity)
    sizes = {label: len(rows) for label, rows in splittable.items()}
    quota = _allocate(sizes, wanted, cap={label: n - 1 for label, n in sizes.items()})
    validation: list[int] = []
    for label, rows in splittable.items():
        validation += _shuffled(rows, seed, label)[: quota[label]]
    chosen = set(validation)
    return [i for i in range(len(labels)) if i not in chosen], sorted(validation)


def subsample_stratified(labels: Sequence[str], max_rows: int, seed: int) -> list[int]:
    """Indices of a seeded subsample of at most `max_rows` rows, in file order.

    Classes keep their proportions (largest remainder), and every class keeps at least one
    row while `max_rows` allows, so a rare label is not lost by subsampling.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    if max_rows >= len(labels):
        return list(range(len(labels)))
    groups = _groups(labels)
    sizes = {label: len(rows) for label, rows in groups.items()}
    quota = _allocate(sizes, max_rows, cap=sizes)
    kept: list[int] = []
    for label, rows in groups.items():
        kept += _shuffled(rows, seed, label)[: quota[label]]
    return sorted(kept)


def _groups(labels: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, []).append(index)
    return groups


def _shuffled(rows: list[int], seed: int, label: str) -> list[int]:
    rows = list(rows)
    random.Random(f"{seed}/{label}").shuffle(rows)
    return rows


def _allocate(sizes: dict[str, int], total: int, cap: dict[str, int]) -> dict[str, int]:
    """Share `total` among classes in proportion to `sizes`, one each first, within `cap`.

    Assumes total <= sum(cap). Ties go to the larger class, then to the earlier label, so the
    result is deterministic.
    """
    n = sum(sizes.values())
    order = sorted(sizes, key=lambda label: -sizes[label])  # stable: file order among equals
    # One row per class first while the total allows (largest classes first).
    quota = {label: 0 for label in sizes}
    for label in order[: min(total, len(order))]:
        quota[label] = min(1, cap[label])
    ideal = {label: total * sizes[label] / n for label in sizes}
    for label in sizes:
        quota[label] = max(quota[label], min(cap[label], math.floor(ideal[label])))
    # The one-each rule can overshoot the total: take back from the most over-served classes.
    while sum(quota.values()) > total:
        reducible = [k for k in order if quota[k] > 1]
        label = max(reducible, key=lambda k: quota[k] - ideal[k])
        quota[label] -= 1
    # Hand out what is left by largest remainder.
    while sum(quota.values()) < total:
        open_ = [k for k in order if quota[k] < cap[k]]
        label = max(open_, key=lambda k: ideal[k] - quota[k])
        quota[label] += 1
    return quota


def capped_rows(label_ids: Sequence[int], limit: int, seed: int) -> list[int]:
    """All row indices, or a seeded stratified sample of ``limit`` of them (file order) when there are more."""
    if len(label_ids) <= limit:
        return list(range(len(label_ids)))
    return sorted(subsample_stratified([str(i) for i in label_ids], limit, seed))
