"""`ftune compare` end to end on tiny random models: processes, table, report, seeds, resume."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from tests.conftest import FIXTURES, read_json, run_ftune

FAST = ["train.max_steps=3", "train.batch_size=8", "train.eval_batch_size=16", "model.max_length=32"]


def compare(tmp_path, model_dir, *extra: str):
    result = run_ftune("compare", f"model={model_dir}", f"data.train={FIXTURES / 'reviews.csv'}", *FAST, *extra,
                       "--out", str(tmp_path / "cmp"), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result, tmp_path / "cmp"


def test_compare_measures_each_technique_in_its_own_process_and_writes_the_report(tmp_path, tiny_llama_dir):
    result, out = compare(tmp_path, tiny_llama_dir, "methods=lora,bitfit,full", "--seeds=2")
    rows = {r["method"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert list(rows)[:3] == ["lora", "bitfit", "full"]
    lora, full = rows["lora"], rows["full"]
    assert lora["status"] == full["status"] == "ok" and lora["seeds"] == "2"
    assert rows["bitfit"]["status"] == "not applicable" and "no bias terms" in rows["bitfit"]["note"]
    assert float(lora["trainable_params"]) < float(full["trainable_params"])
    assert float(full["trainable_share"]) == 1.0
    assert float(lora["ship_size_mb"]) < float(full["ship_size_mb"])  # adapter vs whole model
    for name, row in (("lora", lora), ("full", full)):
        assert float(row["peak_memory_mb"]) > 50 and float(row["wall_time_s"]) > 0 and float(row["tokens_per_s"]) > 0
        # mean and sample standard deviation of the two seeds' own validation accuracies
        per_seed = [read_json(next((out / f"{name}-seed{s}").glob(f"*-{name}")) / "metrics.json")
                    ["validation"]["model"]["accuracy"] for s in (42, 43)]
        assert float(row["accuracy"]) == pytest.approx(statistics.mean(per_seed))
        assert float(row["accuracy_std"]) == pytest.approx(statistics.stdev(per_seed))
    assert {"majority class (baseline)", "TF-IDF + logistic regression (baseline)"} <= {
        r["method"] + (" (baseline)" if r["kind"] == "baseline" else "") for r in rows.values()}
    # every number comes from the slot's own run
    slot = json.loads((out / "lora-seed42" / "result.json").read_text())
    metrics = read_json(next((out / "lora-seed42").glob("*-lora")) / "metrics.json")
    seeds = [read_json(next((out / f"lora-seed{s}").glob("*-lora")) / "metrics.json") for s in (42, 43)]
    assert abs(float(lora["accuracy"]) - sum(m["validation"]["model"]["accuracy"] for m in seeds) / 2) < 1e-9
    assert slot["status"] == "ok" and metrics["training"]["optimizer_steps"] == 3
    data = read_json(out / "results.json")
    assert set(data["curves"]) == {"lora", "full"} and data["meta"]["seeds"] == 2
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "lora" in (out / "results.md").read_text()
    # the seeds vary the training, not the split (data.split_seed); the spread across examples
    # (a 95% interval) is shown apart from the spread across seeds; each technique's verdict on top
    held_out = [{k: v["accuracy"] for k, v in m["validation"].items() if k != "model"} for m in seeds]
    assert held_out[0] == held_out[1]  # the baselines train nothing: the same split gives the same scores
    assert [m["verdict"]["split"] for m in seeds] == ["validation"] * 2
    half = (seeds[0]["validation"]["model"]["accuracy_ci"][1] - seeds[0]["validation"]["model"]["accuracy_ci"][0]) / 2
    assert float(lora["accuracy_ci95"]) > 0 and abs(float(lora["accuracy_ci95"]) - half) < 0.2
    markdown = (out / "results.md").read_text()
    assert "## Verdicts" in markdown and f"- **lora**: {seeds[0]['verdict']['text']}" in markdown
    errors = [json.loads(line) for line in (next((out / "lora-seed42").glob("*-lora")) / "errors.jsonl").read_text()
              .splitlines()]
    if errors:  # the most frequent confusion of the first seed, with its count
        from collections import Counter

        (true, predicted), n = Counter((e["true"], e["predicted"]) for e in errors).most_common(1)[0]
        assert f"Most frequent mistakes: {true} taken for {predicted}: {n} (e.g." in markdown
    assert " ± " in markdown and "(sd " in markdown and markdown.index("## Verdicts") < markdown.index("| method")
    assert "[1/6] lora (seed 42)" in result.stdout

    # resume: nothing left to run, the finished techniques are kept, not re-run
    again = run_ftune("compare", "--resume", str(out), cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("finished in an earlier run, kept") == 6
    assert json.loads((out / "lora-seed42" / "result.json").read_text()) == slot


def test_resume_continues_a_killed_technique_from_its_checkpoint(tmp_path, tiny_bert_dir):
    """Unfinished techniques run again on --resume (finished ones are kept: see the test above),
    from their last checkpoint, not from zero."""
    settings = [f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}", "methods=lora", *FAST,
                "train.max_steps=8", "train.checkpoint_every=3", "--out", str(tmp_path / "cmp")]
    killed = run_ftune("compare", *settings, cwd=tmp_path, timeout=300, env={"FTUNE_KILL_AT": "step:7"})
    slot = tmp_path / "cmp" / "lora-seed42"
    assert read_json(slot / "result.json")["status"] == "failed"  # the worker died at step 7
    again = run_ftune("compare", "--resume", str(tmp_path / "cmp"), cwd=tmp_path, timeout=300)
    assert again.returncode == 0, killed.stdout[-2000:] + again.stdout[-2000:] + again.stderr[-2000:]
    (run,) = [p for p in slot.iterdir() if (p / "config.yaml").is_file()]  # the same run, continued
    training = read_json(run / "metrics.json")["training"]
    assert training["resumed_from_step"] == 6 and training["optimizer_steps"] == 8
    assert {r["method"]: r["status"] for r in csv.DictReader((tmp_path / "cmp" / "results.csv").open())}["lora"] == "ok"


def test_impossible_combinations_fail_before_anything_runs(tmp_path, tiny_bert_dir):
    result = run_ftune("compare", f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                       "methods=lora,qlora,nope", "train.max_steps=2", "run.merge=true", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown technique 'nope'" in result.stderr
    merged = run_ftune("compare", f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                          "methods=qlora", "run.merge=true", "train.max_steps=2", cwd=tmp_path)
    assert merged.returncode == 2 and "qlora" in merged.stderr and "cannot be merged" in merged.stderr
    assert not (tmp_path / "runs").exists()
