"""Whether the best trial's accuracy is distinguishable from the default config's: every trial
is scored on the same held-out rows, so the two are compared row by row (a paired bootstrap of
the difference and McNemar's exact test, as ``ftune train``'s verdict does), from the rows
each trial's run got wrong (its ``errors.jsonl``) and the number of held-out rows."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def paired_accuracy_note(best_run: str | Path | None, default_run: str | Path | None) -> str | None:
    """"95% CI ... over N held-out rows, McNemar p ...: (not) distinguishable", or None where
    either run lacks what it takes (not a classifier, a trial without a run directory)."""
    outcomes = correctness_on_same_rows(best_run, default_run)
    if outcomes is None:
        return None
    from ftune.eval.verdict import mcnemar_p_value, paired_difference

    best, default = outcomes
    difference, low, high = paired_difference(best, default)
    p_value = mcnemar_p_value([b == 1 for b in best], [d == 1 for d in default])
    told_apart = low > 0 or high < 0
    return (f"95% CI {low * 100:+.1f} to {high * 100:+.1f} points over the same {len(best)} held-out rows, "
            f"McNemar p = {p_value:.2g}: " + ("distinguishable from the default config" if told_apart else
                                             "not distinguishable from the default config on these rows"))


def correctness_on_same_rows(first_run, second_run) -> tuple[list[int], list[int]] | None:
    """1/0 per held-out row for two runs evaluated on the same rows, paired row by row."""
    runs = [Path(run) for run in (first_run, second_run) if run]
    if len(runs) != 2 or not all((run / "errors.jsonl").is_file() and (run / "metrics.json").is_file()
                                 for run in runs):
        return None
    sizes = {json.loads((run / "metrics.json").read_text())["validation"]["model"].get("n") for run in runs}
    if len(sizes) != 1 or None in sizes:
        return None
    (rows,) = sizes
    wrong = [_wrong_rows(run) for run in runs]
    first, second = [1] * rows, [1] * rows
    position = 0
    for key in wrong[0].keys() | wrong[1].keys():  # a text held out twice counts twice
        a, b = wrong[0][key], wrong[1][key]
        for i in range(max(a, b)):
            if position >= rows:
                return None  # the files do not describe the same rows
            first[position], second[position] = int(i >= a), int(i >= b)
            position += 1
    return first, second


def _wrong_rows(run: Path) -> Counter:
    rows = (json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines() if line.strip())
    return Counter((row["text"], str(row["true"])) for row in rows)
