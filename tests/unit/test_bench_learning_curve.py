"""bench/learning_curve.py: the curve read from a run's log (training minutes, evaluation time
taken off) and the plot, on a canned log; the benchmark itself trains for minutes and is run by hand."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "learning_curve.py"


def _log(run: Path, entries: list[dict]) -> None:
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_curve_takes_earlier_evaluation_time_off_the_minutes(tmp_path):
    bench = load_script(SCRIPT, "learning_curve_under_test")
    _log(tmp_path / "run", [
        {"step": 10, "seconds": 30.0, "loss": 0.7},
        {"step": 20, "seconds": 60.0, "eval_accuracy": 0.61234, "eval_runtime": 12.0},
        {"step": 30, "seconds": 102.0, "loss": 0.5},  # 30 s of training after a 12 s evaluation
        {"step": 40, "seconds": 132.0, "eval_accuracy": 0.8, "eval_runtime": 12.0},
    ])
    assert bench.curve_of(tmp_path / "run") == [
        {"minutes": 1.0, "step": 20, "accuracy": 0.6123},
        {"minutes": 2.0, "step": 40, "accuracy": 0.8},
    ]


def test_plot_is_a_png_with_one_line_per_variant(tmp_path):
    bench = load_script(SCRIPT, "learning_curve_under_test")
    results = {name: {"precision": precision, "accuracy": accuracy,
                      "curve": [{"minutes": 1.0, "step": 5, "accuracy": accuracy - 0.1},
                                {"minutes": 2.0, "step": 10, "accuracy": accuracy}]}
               for name, precision, accuracy in (("old", "fp32", 0.85), ("new", "bf16", 0.88))}
    path = tmp_path / "curve.png"
    bench.draw(results, "sst2: 10 minutes", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(bench.VARIANTS) == {"old", "new"} and bench.VARIANTS["new"] == []  # new = today's defaults, untouched
