"""The compare report: csv / json for tools, markdown and one self-contained HTML page for people."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import subprocess
import sys

import pytest

from ftune.comparison.report import PNG_SIGNATURE, ROW_FIELDS, check_self_contained, human_count, write_results

from ..conftest import REPO

SCREENSHOT_SCRIPT = REPO / "scripts" / "screenshot_report.py"

META = {"model": "tiny-bert", "data": "sst2-sample.csv", "task": "classification", "budget": "3 min per technique",
        "seeds": 3, "started": "2026-05-09 10:00", "finished": "2026-05-09 10:41", "device": "cpu",
        "command": "ftune compare --data sst2-sample.csv"}


def _rows() -> list[dict]:
    return [
        {"method": "lora", "kind": "technique", "status": "ok", "seeds": 3, "trainable_params": 1_840_000,
         "trainable_share": 0.0135, "peak_memory_mb": 1520.4, "wall_time_s": 180.2, "train_steps": 410,
         "tokens_per_s": 5231.0, "ship_size_mb": 7.1, "accuracy": 0.88813, "accuracy_std": 0.0042,
         "accuracy_ci95": 0.0215, "f1": 0.8812, "f1_std": 0.0051, "lora_rank": 8,
         "verdict": "fine-tuning beat the best alternative (tfidf, 0.801) by 8.7 points of accuracy"},
        {"method": "bitfit", "kind": "technique", "status": "ok", "seeds": 1, "trainable_params": 102_000,
         "trainable_share": 0.00075, "peak_memory_mb": 1210.0, "wall_time_s": 179.9, "train_steps": 520,
         "tokens_per_s": 6400.5, "ship_size_mb": 0.4, "accuracy": 0.8511, "accuracy_std": None,
         "f1": float("nan"), "f1_std": None},
        {"method": "full", "kind": "technique", "status": "failed", "note": "out of memory", "seeds": 3,
         "trainable_params": 136_000_000, "trainable_share": 1.0, "peak_memory_mb": None, "wall_time_s": 12.0,
         "accuracy": None},
        {"method": "majority", "kind": "baseline", "status": "ok", "accuracy": 0.509, "f1": 0.3373},
        {"method": "tfidf", "kind": "baseline", "status": "ok", "accuracy": 0.8012, "f1": 0.8004,
         "wall_time_s": 2.5},
    ]


def _curves() -> dict[str, list[dict]]:
    return {
        "lora": [{"step": s, "seconds": s * 0.4, "loss": 0.7 * math.exp(-s / 40) + 0.2} for s in range(0, 400, 10)],
        "bitfit": [{"step": s, "seconds": s * 0.3, "loss": 0.7 * math.exp(-s / 90) + 0.25} for s in range(0, 500, 10)]
        + [{"step": 510, "seconds": 153.0, "loss": None}],
        "full": [{"step": 0, "seconds": 0.0, "loss": 0.71}],
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    pytest.importorskip("matplotlib")
    directory = tmp_path_factory.mktemp("compare")
    rows, curves = _rows(), _curves()
    return directory, rows, curves, write_results(directory, rows, curves, META)


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(uri, validate=True) for uri in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)]


def test_writes_the_four_files(written):
    directory, _, _, paths = written
    assert {k: p.name for k, p in paths.items()} == {
        "csv": "results.csv", "json": "results.json", "md": "results.md", "html": "report.html"}
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in paths.values())  # no temp files


def test_csv_has_one_line_per_row_method_first_and_extra_keys_last(written):
    _, rows, _, paths = written
    with open(paths["csv"], newline="") as handle:
        reader = csv.DictReader(handle)
        records = list(reader)
    assert reader.fieldnames[0] == "method"
    assert reader.fieldnames[-1] == "lora_rank"  # unknown keys after ROW_FIELDS
    assert [f for f in reader.fieldnames if f in ROW_FIELDS] == [f for f in ROW_FIELDS if f in reader.fieldnames]
    assert [r["method"] for r in records] == [r["method"] for r in rows]
    assert records[0]["accuracy"] == "0.88813" and records[0]["lora_rank"] == "8"
    assert records[2]["peak_memory_mb"] == "" and records[2]["note"] == "out of memory"


def test_json_round_trips_with_nan_as_null(written):
    _, rows, curves, paths = written
    data = json.loads(paths["json"].read_text())
    assert data["meta"] == META
    assert data["rows"][0] == rows[0]
    assert data["rows"][1]["f1"] is None  # NaN is not valid JSON
    assert data["curves"]["lora"] == curves["lora"]
    assert [r["method"] for r in data["rows"]] == [r["method"] for r in rows]


def test_markdown_table_formats_values_for_a_reader(written):
    _, rows, _, paths = written
    md = paths["md"].read_text()
    assert "- model: tiny-bert" in md and "- budget: 3 min per technique" in md and "2026-05-09 10:00" in md
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(lines) == {"method", "lora", "bitfit", "full", "majority (baseline)", "tfidf (baseline)"}
    lora = lines["lora"]
    # the spread across examples (95% interval) and across seeds (sd), apart
    assert "0.8881 ± 0.021 (sd 0.0042)" in lora and "0.8812 (sd 0.0051)" in lora
    assert "- **lora**: fine-tuning beat the best alternative (tfidf, 0.801)" in md.split("| method")[0]
    assert "1.84M" in lora and "1.35%" in lora and "1,520" in lora and "5,231" in lora
    assert "| 0.8511 |" in lines["bitfit"] and "±" not in lines["bitfit"]  # one seed: no spread
    assert "0.075%" in lines["bitfit"] and "102K" in lines["bitfit"]
    assert "failed: out of memory" in lines["full"]
    from ftune.comparison.report import RESOURCE_COLUMNS

    assert lines["tfidf (baseline)"].count("—") == len(RESOURCE_COLUMNS)  # even where a value was given
    assert "0.8012" in lines["tfidf (baseline)"]
    assert len({line.count("|") for line in lines.values()}) == 1  # every row has every column


def test_html_is_one_self_contained_page_with_png_plots(written):
    _, _, _, paths = written
    page = paths["html"].read_text()
    images = _images(page)
    assert len(images) >= 4 and all(png.startswith(PNG_SIGNATURE) for png in images)
    assert page.count("<img") == len(images)
    assert "http://" not in page and "https://" not in page
    assert check_self_contained(page) == []
    assert "failed: out of memory" in page and "0.8881 ± 0.021 (sd 0.0042)" in page and "tiny-bert" in page


def test_self_contained_check_names_what_would_break_offline():
    page = ('<img src="plot.png"><img src="data:image/png;base64,aGVsbG8="><link href="https://x/s.css">'
            '<img src="data:image/png;base64,' + base64.b64encode(PNG_SIGNATURE + b"rest").decode() + '">')
    problems = check_self_contained(page)
    assert len(problems) == 4
    assert "plot.png" in problems[0] and "does not decode to a PNG" in problems[1]
    assert any("https://x/s.css" in p for p in problems)


def test_missing_values_and_nothing_to_plot_do_not_crash(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"method": "lora", "kind": "technique", "status": "ok", "trainable_params": None, "accuracy": None,
             "peak_memory_mb": float("nan"), "tokens_per_s": None, "wall_time_s": None},
            {"method": "prompt", "kind": "technique", "status": "not applicable", "note": "encoder model"}]
    paths = write_results(tmp_path, rows, {"lora": [{"step": 1, "seconds": 1.0, "loss": None}]}, {"task": "sft"})
    page = paths["html"].read_text()
    assert _images(page) == []
    assert page.count('class="plot-note"') == 5 and "no technique reported its peak memory" in page
    md = paths["md"].read_text()
    assert "not applicable: encoder model" in md and "perplexity" in md
    assert check_self_contained(page) == []


def test_writing_twice_replaces_the_files(written, tmp_path):
    directory, rows, curves, _ = written
    write_results(tmp_path, rows, curves, META)
    paths = write_results(tmp_path, rows[:2], {}, {**META, "model": "other-model"})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    assert "other-model" in paths["md"].read_text() and "full" not in paths["md"].read_text()
    assert len(json.loads(paths["json"].read_text())["rows"]) == 2
    assert len(list(csv.DictReader(paths["csv"].open()))) == 2
    assert "no finished technique logged a training loss" in paths["html"].read_text()


def test_sft_report_plots_perplexity(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"method": "lora", "kind": "technique", "status": "ok", "seeds": 2, "trainable_params": 5e5,
             "perplexity": 12.345, "perplexity_std": 0.4, "peak_memory_mb": 900, "tokens_per_s": 100,
             "wall_time_s": 60},
            {"method": "zero-shot", "kind": "baseline", "status": "ok", "perplexity": 40.0}]
    paths = write_results(tmp_path, rows, {}, {"task": "sft", "seeds": 2})
    assert "12.35 (sd 0.40)" in paths["md"].read_text()
    assert "accuracy" not in paths["md"].read_text()
    assert len(_images(paths["html"].read_text())) == 4  # no curves: the loss plot is a note


def test_a_plot_that_fails_becomes_a_note_and_the_results_are_still_written(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from ftune.comparison import plots

    def broken(*args, **kwargs):
        raise ValueError("bad data")

    monkeypatch.setattr(plots, "_plot_bars", broken)
    paths = write_results(tmp_path, _rows(), _curves(), META)
    page = paths["html"].read_text()
    assert page.count("could not be drawn (ValueError: bad data)") == 3 and len(_images(page)) == 2
    assert len(list(csv.DictReader(paths["csv"].open()))) == len(_rows())


@pytest.mark.parametrize("n, text", [(512, "512"), (12_345, "12.3K"), (999_999, "1M"), (1_840_000, "1.84M"),
                                     (7_240_000_000, "7.24B")])
def test_human_count(n, text):
    assert human_count(n) == text


def _screenshot_module():
    sys.path.insert(0, str(SCREENSHOT_SCRIPT.parent))
    try:
        import screenshot_report
    finally:
        sys.path.remove(str(SCREENSHOT_SCRIPT.parent))
    return screenshot_report


def test_screenshot_script_says_how_to_install_chromium(written, monkeypatch, capsys, tmp_path):
    module = _screenshot_module()
    monkeypatch.setattr(module, "find_chromium", lambda: None)
    assert module.main([str(written[3]["html"]), str(tmp_path / "out.png")]) != 0
    assert "apt-get install -y chromium" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_report_renders_in_headless_chromium(written, tmp_path):
    if _screenshot_module().find_chromium() is None:
        pytest.skip("Chromium not installed (apt-get install chromium)")
    from matplotlib.image import imread

    out = tmp_path / "report.png"
    result = subprocess.run([sys.executable, str(SCREENSHOT_SCRIPT), str(written[3]["html"]), str(out)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "1280x4000 PNG" in result.stdout
    pixels = imread(out)
    assert pixels.shape[1] == 1280
    top = pixels[:2000, :, :3]  # the table and the first plots: never blank
    assert top.std() > 0.05
    assert (top.mean(axis=2) < 0.5).mean() > 0.005  # some dark pixels: text and lines were drawn


def test_dpo_comparison_reports_preference_scores_under_its_own_task(tmp_path):
    """A DPO comparison is labelled dpo, shows preference accuracy and reward margin, and no
    empty accuracy / F1 columns."""
    from ftune.comparison.collect import task_metrics
    from ftune.comparison.runner import task_name

    after = {"preference_accuracy": 0.625, "reward_margin": 0.0421, "likelihood_accuracy": 0.5, "loss": 0.68, "n": 8}
    scores = task_metrics({"validation": {"before": {}, "after": after}})
    assert scores == {"preference_accuracy": 0.625, "reward_margin": 0.0421}
    rows = [{"method": "lora", "kind": "technique", "status": "ok", "seeds": 1, "trainable_params": 5e5,
             "peak_memory_mb": 900, "tokens_per_s": 100, "wall_time_s": 60, **scores}]
    assert task_name(rows) == "dpo"
    paths = write_results(tmp_path, rows, {}, {"task": task_name(rows), "seeds": 1})
    table = paths["md"].read_text()
    assert "preference accuracy" in table and "0.6250" in table and "reward margin" in table
    assert "accuracy |" not in table.replace("preference accuracy |", "") and "F1" not in table
    assert "| task | dpo" in table or "dpo" in paths["html"].read_text()
