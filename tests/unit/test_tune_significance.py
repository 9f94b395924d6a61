"""ftune tune says whether its best trial is distinguishable from the default config, pairing
the two trials' held-out rows from their errors.jsonl (canned runs; no training)."""

from __future__ import annotations

import json
from pathlib import Path

from ftune.tuning.significance import correctness_on_same_rows, paired_accuracy_note


def _run(path: Path, rows: int, wrong: list[tuple[str, str]]) -> Path:
    path.mkdir()
    (path / "metrics.json").write_text(json.dumps({"validation": {"model": {"n": rows}}}))
    (path / "errors.jsonl").write_text("".join(json.dumps({"text": t, "true": y, "predicted": "x", "confidence": 0.9})
                                               + "\n" for t, y in wrong))
    return path


def test_rows_are_paired_by_text_and_label_and_a_repeated_text_counts_each_time(tmp_path):
    best = _run(tmp_path / "best", 10, [("a", "1"), ("b", "0")])
    default = _run(tmp_path / "default", 10, [("b", "0"), ("c", "1"), ("c", "1"), ("d", "0")])
    first, second = correctness_on_same_rows(best, default)
    assert len(first) == len(second) == 10
    assert sum(first) == 8 and sum(second) == 6
    # b wrong in both; a wrong only in best; c twice and d only in default
    pairs = sorted(zip(first, second))
    assert pairs.count((0, 0)) == 1 and pairs.count((0, 1)) == 1 and pairs.count((1, 0)) == 3 and pairs.count((1, 1)) == 5


def test_a_small_gain_on_few_rows_is_not_distinguishable_and_a_large_one_on_many_is(tmp_path):
    small = paired_accuracy_note(_run(tmp_path / "b1", 40, [("x", "1")]), _run(tmp_path / "d1", 40, [("y", "1"), ("z", "0")]))
    assert "over the same 40 held-out rows" in small and "not distinguishable" in small
    many_wrong = [(f"t{i}", "1") for i in range(60)]
    large = paired_accuracy_note(_run(tmp_path / "b2", 400, many_wrong[:5]), _run(tmp_path / "d2", 400, many_wrong))
    assert "not distinguishable" not in large and "distinguishable from the default config" in large


def test_no_note_without_both_runs_on_the_same_rows(tmp_path):
    best = _run(tmp_path / "best", 10, [])
    assert paired_accuracy_note(best, None) is None
    assert paired_accuracy_note(best, _run(tmp_path / "other", 12, [])) is None  # not the same held-out rows
    assert paired_accuracy_note(best, tmp_path / "missing") is None
