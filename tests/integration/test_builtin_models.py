"""The built-in models on ftune's demo data and on the shared real data sets (small budgets).

These load real weights from the model packages (no network). They skip with a reason when a
package or ../shared/data is missing.
"""

from __future__ import annotations

import json

import pytest

from ftune.models.registry import model_problem
from tests.conftest import only_run_dir, read_json, run_ftune, shared_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def need_model(name: str) -> None:
    problem = model_problem(name)
    if problem:
        pytest.skip(f"{name}: {problem}")



def test_default_job_beats_both_baselines(tmp_path):
    need_model("minilm-l6")
    result = run_ftune("train", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training:" in result.stderr  # the progress bar
    validation = read_json(only_run_dir(tmp_path) / "metrics.json")["validation"]
    model = validation["model"]["accuracy"]
    assert model > validation["majority"]["accuracy"]
    assert model > validation["tfidf_logreg"]["accuracy"]


def test_minilm_lora_on_sst2_subset_beats_tfidf(tmp_path):
    need_model("minilm-l6")
    data = shared_file("sst2/train.tsv")
    result = run_ftune("train", f"data.train={data}", "data.max_rows=4000", "train.max_minutes=1.5",
                       cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run_dir(tmp_path)
    validation = read_json(run / "metrics.json")["validation"]
    assert validation["model"]["accuracy"] > validation["tfidf_logreg"]["accuracy"] + 0.03
    assert read_json(run / "metrics.json")["training"]["stopped_by_time_budget"] in (True, False)

    evaluated = run_ftune("eval", str(run), "--data", str(data), "--json", cwd=tmp_path, timeout=900)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout)["n"] == 67_347


def test_minilm_on_ag_news_headerless_four_classes(tmp_path):
    need_model("minilm-l6")
    data = shared_file("ag_news/train.csv")
    result = run_ftune("train", f"data.train={data}", "data.max_rows=2500", "train.max_minutes=1.5",
                       "data.label_column=0", "data.text_columns=[1,2]", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run_dir(tmp_path)
    validation = read_json(run / "metrics.json")["validation"]
    assert read_json(run / "model" / "ftune-model.json")["labels"] == ["1", "2", "3", "4"]
    assert validation["model"]["accuracy"] > 0.75 > validation["majority"]["accuracy"]


def test_smollm2_lora_classifier_trains_and_predicts(tmp_path):
    need_model("smollm2-135m")
    data = shared_file("sst2/train.tsv")
    result = run_ftune("train", "model=smollm2-135m", f"data.train={data}", "data.max_rows=400",
                       "train.max_steps=12", "train.batch_size=8", "model.max_length=48",
                       cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run_dir(tmp_path)
    info = read_json(run / "model" / "ftune-model.json")
    assert info["base_model"] == "smollm2-135m" and info["method"] == "lora"
    assert (run / "model" / "adapter_model.safetensors").is_file()
    predicted = run_ftune("predict", str(run), "a gorgeous , moving film", "--json", cwd=tmp_path, timeout=600)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    row = json.loads(predicted.stdout)
    assert row["label"] in ("0", "1") and sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-4)
