"""`ftune train | eval | predict | config` end to end in a subprocess, on tiny random models."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES, only_run_dir, read_json, run_ftune

FAST = ["train.epochs=2", "train.batch_size=8", "train.eval_batch_size=16", "model.max_length=32"]


def train(tmp_path, model_dir, *extra: str):
    result = run_ftune("train", f"model={model_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                       *FAST, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, only_run_dir(tmp_path)


@pytest.mark.parametrize("model_fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_train_writes_a_complete_reloadable_run(tmp_path, model_fixture, request):
    model_dir = request.getfixturevalue(model_fixture)
    result, run = train(tmp_path, model_dir)

    assert "TF-IDF + logistic regression" in result.stdout and "majority class" in result.stdout
    assert "parameters train (" in result.stdout  # trainable count and share are printed
    for name in ("config.yaml", "data.json", "log.jsonl", "metrics.json", "README.md"):
        assert (run / name).is_file(), name
    manifest = read_json(run / "data.json")
    (train_file,) = manifest["files"]
    from ftune.runs.run_dir import file_sha256

    assert train_file["sha256"] == file_sha256(FIXTURES / "reviews.csv")
    assert train_file["rows"] == 40 and train_file["bad_rows"] == 0
    assert manifest["split"] == {"train": 36, "validation": 4, "test": 0,
                                 "validation_from": "stratified 10% of train, seed 42"}
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("loss" in r and "learning_rate" in r for r in log)
    assert any("eval_accuracy" in r for r in log)
    metrics = read_json(run / "metrics.json")
    assert set(metrics["validation"]) == {"model", "majority", "tfidf_logreg", "embeddings_logreg", "knn"}
    assert metrics["validation"]["model"]["n"] == 4
    assert 0 < metrics["training"]["trainable_share"] <= 1
    model_files = {p.name for p in (run / "model").iterdir()}
    assert "ftune-model.json" in model_files and any(n.endswith(".safetensors") for n in model_files)
    assert "tokenizer_config.json" in model_files
    assert read_json(run / "model" / "ftune-model.json")["labels"] == ["negative", "positive"]

    # honest figures: an interval on every accuracy, a verdict against the best baseline, the mistakes
    for name, scores in metrics["validation"].items():
        low, high = scores["accuracy_ci"]
        assert low <= scores["accuracy"] <= high, name
        assert "_predicted_ids" not in scores  # per-example predictions stay out of metrics.json
    verdict = metrics["verdict"]
    baselines = [k for k in metrics["validation"] if k != "model"]
    best = max(baselines, key=lambda k: metrics["validation"][k]["accuracy"])
    assert verdict["baseline_key"] == best and verdict["split"] == "validation"
    assert verdict["outcome"] in ("better", "worse", "indistinguishable")
    assert f"verdict (validation split): {verdict['text']}" in result.stdout
    assert "trainable parameters" in verdict["text"] and "MB shipped" in verdict["text"]
    assert " ± " in result.stdout
    card = (run / "README.md").read_text()
    assert f"**Verdict** (validation split): {verdict['text']}." in card and "## Mistakes" in card
    errors = [json.loads(line) for line in (run / "errors.jsonl").read_text().splitlines()]
    wrong = round((1 - metrics["validation"]["model"]["accuracy"]) * 4)
    assert len(errors) == wrong and all(e["true"] != e["predicted"] for e in errors)
    assert [e["confidence"] for e in errors] == sorted((e["confidence"] for e in errors), reverse=True)

    # `ftune eval` on another labeled file (JSONL): its figures agree with its own confusion
    # matrix. (That eval reproduces the in-memory model's training-time figures is checked in
    # tests/unit/test_architecture.py, on an explicit validation file.)
    evaluated = run_ftune("eval", str(run), "--data", str(FIXTURES / "reviews.jsonl"), "--json", "--errors", "4",
                          cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scores = json.loads(evaluated.stdout)
    wrong = scores["errors"]  # --errors N: the N most confident mistakes
    assert len(wrong) == min(4, round((1 - scores["accuracy"]) * 40)) and all(e["true"] != e["predicted"] for e in wrong)
    assert [e["confidence"] for e in wrong] == sorted((e["confidence"] for e in wrong), reverse=True)
    assert scores["accuracy_ci"][0] <= scores["accuracy"] <= scores["accuracy_ci"][1]
    # the cheap baselines, fitted on the run's own training split, on this file, and the verdict
    assert set(scores["baselines"]) == {"majority", "tfidf_logreg"}
    best = max(scores["baselines"], key=lambda k: scores["baselines"][k]["accuracy"])
    assert scores["verdict"]["baseline_key"] == best and scores["verdict"]["run_score"] == scores["accuracy"]
    assert {"accuracy", "f1", "precision", "recall", "loss", "n"} <= set(scores) and scores["n"] == 40
    matrix = scores["confusion_matrix"]
    cells = matrix["rows_true_columns_predicted"]
    assert sum(map(sum, cells)) == 40
    assert scores["accuracy"] == pytest.approx(sum(cells[i][i] for i in range(len(cells))) / 40)
    assert scores["loss"] > 0

    predicted = run_ftune("predict", str(run), "a warm funny film", "the plot goes nowhere", "--json", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["a warm funny film", "the plot goes nowhere"]
    for row in rows:
        assert row["label"] in ("negative", "positive")
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)


def test_eval_and_predict_agree_with_the_saved_model(tmp_path, tiny_bert_dir):
    _, run = train(tmp_path, tiny_bert_dir, "train.epochs=3")
    evaluated = json.loads(run_ftune("eval", str(run), "--data", str(FIXTURES / "reviews.tsv"), "--json",
                                     cwd=tmp_path).stdout)
    predicted = run_ftune("predict", str(run), "--data", str(FIXTURES / "reviews.tsv"), "--json", cwd=tmp_path)
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    import csv

    with open(FIXTURES / "reviews.tsv", encoding="utf-8") as handle:
        truth = [r["label"] for r in csv.DictReader(handle, delimiter="\t")]
    accuracy = sum(r["label"] == t for r, t in zip(rows, truth)) / len(truth)
    assert len(rows) == 40 and accuracy == pytest.approx(evaluated["accuracy"])


def test_broken_rows_are_reported_by_line_and_skipped(tmp_path, tiny_bert_dir):
    broken = tmp_path / "broken.csv"
    broken.write_bytes((FIXTURES / "broken.csv").read_bytes().replace(b"@@NOT_UTF8@@", b"\xff\xfe"))
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={broken}", *FAST,
                       "data.labels=[negative,positive]", "data.max_bad_fraction=0.3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout
    assert "8 of 38 rows skipped" in report
    for line, reason in [(5, "empty text"), (9, "empty text"), (12, "label"), (15, "expected 2 fields"),
                         (18, 'unknown label "neutral"'), (25, "expected 2 fields"), (31, "not UTF-8"),
                         (35, "expected 2 fields")]:
        matching = [r for r in report.splitlines() if r.strip().startswith(f"line {line} ")]
        assert matching and reason in matching[0], (line, reason, report)
    manifest = read_json(only_run_dir(tmp_path) / "data.json")
    assert manifest["files"][0]["bad_rows"] == 8 and manifest["files"][0]["used_rows"] == 30


def test_too_many_bad_rows_stop_before_training_with_the_limit_named(tmp_path, tiny_bert_dir):
    broken = tmp_path / "broken.csv"
    broken.write_bytes((FIXTURES / "broken.csv").read_bytes().replace(b"@@NOT_UTF8@@", b"\xff\xfe"))
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={broken}", *FAST, cwd=tmp_path)
    assert result.returncode == 2
    assert "over data.max_bad_fraction=5%" in result.stderr and "line 5" in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_headerless_file_by_position_with_joined_text_columns(tmp_path, tiny_bert_dir):
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'headerless_news.csv'}",
                       "data.label_column=0", "data.text_columns=[1,2]", "data.validation_fraction=0.2",
                       *FAST, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run_dir(tmp_path)
    assert read_json(run / "model" / "ftune-model.json")["labels"] == ["1", "2", "3", "4"]
    assert read_json(run / "data.json")["split"]["validation"] == 4


def test_misspelled_key_fails_fast_with_did_you_mean(tmp_path):
    result = run_ftune("train", "method.alpah=8", "train.lr=0.1", cwd=tmp_path)
    assert result.returncode == 2
    assert 'method.alpah: not an option of method \'lora\'. Did you mean "method.alpha"?' in result.stderr
    assert "train.lr: unknown key" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_config_prints_the_resolved_yaml(tmp_path):
    (tmp_path / "my.yaml").write_text("method: freeze\ntrain:\n  epochs: 7\n")
    result = run_ftune("config", "my.yaml", "method.layers=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "  name: freeze" in result.stdout and "  layers: 1" in result.stdout
    assert "  epochs: 7.0" in result.stdout


def test_eval_of_an_unfinished_run_is_a_clear_error(tmp_path):
    (tmp_path / "runs" / "half").mkdir(parents=True)
    result = run_ftune("eval", str(tmp_path / "runs" / "half"), "--data", str(FIXTURES / "reviews.csv"),
                       cwd=tmp_path)
    assert result.returncode == 2 and "not a finished ftune run" in result.stderr
