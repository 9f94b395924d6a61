"""The built-in models on ftune's demo data and on the shared real data sets (small budgets).

These load real weights from the model packages (no network). They skip with a reason when a
package or ../shared/data is missing.
"""

from __future__ import annotations

import json
import math

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
    metrics = read_json(only_run_dir(tmp_path) / "metrics.json")
    validation, training = metrics["validation"], metrics["training"]
    assert training["learned_beyond_prior"] is True and "learned nothing" not in result.stdout
    assert training["kept"] == "last" and training["kept_step"] == training["optimizer_steps"]
    model = validation["model"]["accuracy"]
    assert model > validation["majority"]["accuracy"]
    assert model > validation["tfidf_logreg"]["accuracy"]


@pytest.mark.extended  # about 50 s; the default suite covers built-in MiniLM against every baseline (the default job's test), gzip and re-evaluation (tiny-model and reader tests)
def test_minilm_lora_on_sst2_subset_beats_tfidf(tmp_path):
    need_model("minilm-l6")
    data = shared_file("sst2/train.tsv")
    result = run_ftune("train", f"data.train={data}", "data.max_rows=3000", "train.max_steps=160",
                       cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run_dir(tmp_path)
    validation = read_json(run / "metrics.json")["validation"]
    assert validation["model"]["accuracy"] > validation["tfidf_logreg"]["accuracy"] + 0.03
    assert read_json(run / "metrics.json")["training"]["optimizer_steps"] == 160

    sample = tmp_path / "sample.tsv.gz"  # re-evaluation reads gzip too
    import gzip

    with gzip.open(sample, "wt", encoding="utf-8") as handle:
        handle.writelines(data.read_text(encoding="utf-8").splitlines(keepends=True)[:1001])
    evaluated = run_ftune("eval", str(run), "--data", str(sample), "--json", cwd=tmp_path, timeout=900)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scores = json.loads(evaluated.stdout)
    assert scores["n"] == 1000 and scores["accuracy"] > 0.7


@pytest.mark.extended  # about 25-50 s; the default suite covers headerless files, joined text columns and four classes: tiny-model CLI tests (headerless_news.csv)
def test_minilm_on_ag_news_headerless_four_classes(tmp_path):
    need_model("minilm-l6")
    data = shared_file("ag_news/train.csv")
    result = run_ftune("train", f"data.train={data}", "data.max_rows=2500", "train.max_minutes=0.5",
                       "data.label_column=0", "data.text_columns=[1,2]",
                       "eval.baselines=[majority,tfidf]",  # the frozen-vector baselines are tested on SST-2
                       cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run_dir(tmp_path)
    validation = read_json(run / "metrics.json")["validation"]
    assert read_json(run / "model" / "ftune-model.json")["labels"] == ["1", "2", "3", "4"]
    assert validation["model"]["accuracy"] > 0.75 > validation["majority"]["accuracy"]


@pytest.mark.extended  # about 25-50 s; the default suite covers a decoder with a classification head: the tiny Llama CLI tests
def test_smollm2_lora_classifier_trains_and_predicts(tmp_path):
    need_model("smollm2-135m")
    data = shared_file("sst2/train.tsv")
    result = run_ftune("train", "model=smollm2-135m", f"data.train={data}", "data.max_rows=200",
                       "train.max_steps=4", "train.batch_size=8", "model.max_length=48",
                       "eval.baselines=[majority,tfidf]",  # the frozen-vector baselines are tested on MiniLM
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


def test_smollm2_sft_on_alpaca_learns_to_answer_and_stop(tmp_path):
    need_model("smollm2-135m")
    data = shared_file("alpaca/alpaca_2k.jsonl")
    result = run_ftune("train", "model=smollm2-135m", f"data.train={data}", "data.max_rows=120",
                       "data.validation_fraction=0.1", "train.max_steps=6", "train.batch_size=4",
                       "model.max_length=256", "generate.samples=1", "generate.max_new_tokens=24",
                       "eval.retrieval=bm25",  # MiniLM retrieval is tested in tests/unit/test_retrieval.py
                       cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run_dir(tmp_path)
    validation = read_json(run / "metrics.json")["validation"]
    assert validation["after"]["loss"] < validation["before"]["loss"]
    retrieved = validation["base_retrieval_4_shot"]  # the base model shown the 4 most similar training examples
    assert retrieved["tokens"] == validation["before"]["tokens"] and retrieved["mean_shots"] > 0
    assert read_json(run / "data.json")["template"] == "chat"  # SmolLM2's own ChatML template
    generated = run_ftune("generate", str(run), "Name a primary colour.", "--json", "--temperature", "0",
                          "--max-new-tokens", "24", cwd=tmp_path, timeout=600)
    assert generated.returncode == 0, generated.stderr[-2000:]
    reply = json.loads(generated.stdout)
    # it answers and stops by itself (end-of-turn), well before the token limit
    assert reply["reply"].strip() and reply["ended_with_eos"] and reply["new_tokens"] < 24, reply


def test_smollm2_dpo_on_hh_pairs_runs_with_the_adapter_as_reference(tmp_path):
    need_model("smollm2-135m")
    data = shared_file("hh_rlhf/train.jsonl")
    result = run_ftune("train", "model=smollm2-135m", f"data.train={data}", "data.max_rows=60",
                       "data.validation_fraction=0.1", "train.max_steps=4", "train.batch_size=2",
                       "model.max_length=192", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(only_run_dir(tmp_path) / "metrics.json")
    before, after = metrics["validation"]["before"], metrics["validation"]["after"]
    assert before["preference_accuracy"] == 0.5 and before["reward_margin"] == 0  # the model is its reference
    assert after["n"] == 6
    # four steps moved the policy away from its reference (the disabled adapter) on held-out pairs
    assert abs(after["reward_margin"]) > 1e-5 and after["loss"] != pytest.approx(math.log(2), abs=1e-6)
