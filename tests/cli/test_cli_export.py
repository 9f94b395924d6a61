"""`ftune export` end to end on tiny random models: merged and adapter round trips re-checked
in plain transformers / peft, and every refusal, each before anything heavy loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES, only_run_dir, read_json, run_ftune

FAST = ["train.epochs=2", "train.batch_size=8", "train.eval_batch_size=16", "model.max_length=32"]


def _train(cwd, model_dir, *extra):
    result = run_ftune("train", f"model={model_dir}", f"data.train={FIXTURES / 'reviews.csv'}", *FAST, *extra, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(cwd)


@pytest.fixture(scope="module")
def lora_classifier(tmp_path_factory, tiny_bert_dir):
    return _train(tmp_path_factory.mktemp("lora"), tiny_bert_dir, "method=lora", "train.learning_rate=0.01")


@pytest.fixture(scope="module")
def prompt_classifier(tmp_path_factory, tiny_bert_dir):
    return _train(tmp_path_factory.mktemp("prompt"), tiny_bert_dir, "method=prompt", "train.epochs=1")


def test_merged_export_is_a_plain_transformers_model_that_agrees_with_the_run(lora_classifier, tmp_path):
    out = tmp_path / "merged"
    result = run_ftune("export", str(lora_classifier), "--to", "merged", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = read_json(out / "export.json")
    check = report["check"]
    assert check["artifact"]["agreement"] == 1.0 and check["verdict"]["passed"]
    # the held-out split is the run's own: same size and the same accuracy as its metrics.json
    metrics = read_json(lora_classifier / "metrics.json")["validation"]["model"]
    assert check["reference"]["n"] == metrics["n"]
    assert check["reference"]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert "agreement" in result.stdout and "PyTorch (ftune run)" in result.stdout
    # loads with nothing of ftune or peft imported, and keeps the label names
    code = ("import sys, json; from transformers import AutoModelForSequenceClassification as A;"
            f"m = A.from_pretrained({str(out)!r}); print(json.dumps(m.config.id2label));"
            "assert 'peft' not in sys.modules and 'ftune' not in sys.modules")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert sorted(json.loads(loaded.stdout.strip().splitlines()[-1]).values()) == ["negative", "positive"]
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_adapter_export_loads_with_plain_peft(lora_classifier, tmp_path):
    out = tmp_path / "adapter"
    result = run_ftune("export", str(lora_classifier), "--to", "adapter", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    assert read_json(out / "export.json")["check"]["artifact"]["agreement"] == 1.0
    assert "PeftModel.from_pretrained(base" in (out / "README.md").read_text()


def test_refusals_name_the_problem_and_load_nothing(lora_classifier, prompt_classifier, tmp_path):
    cases = [
        ((str(prompt_classifier), "--to", "merged"), "'prompt'"),  # no weights to fold
        ((str(lora_classifier), "--to", "gguf"), "generative"),  # a classifier
        ((str(lora_classifier), "--to", "merged", "--out", str(tmp_path)), "already exists"),
        ((str(tmp_path / "nothing"), "--to", "merged"), "no such run directory"),
        ((str(tmp_path), "--to", "merged"), "not a finished ftune run"),
    ]
    for arguments, expected in cases:
        result = run_ftune("export", *arguments, cwd=tmp_path)
        assert result.returncode != 0 and expected in result.stderr, (arguments, result.stderr[-1500:])
        assert "Traceback" not in result.stderr
    refused = run_ftune("export", str(prompt_classifier), "--to", "merged", cwd=tmp_path)
    assert "it can be exported --to adapter" in refused.stderr  # the targets that are left
    assert not (prompt_classifier / "exports").exists()
    unknown = run_ftune("export", str(lora_classifier), "--to", "tflite", cwd=tmp_path)
    assert unknown.returncode != 0 and "invalid choice" in unknown.stderr


def test_a_drop_over_max_drop_exits_non_zero_and_keeps_the_figures(lora_classifier, tmp_path):
    out = tmp_path / "strict"
    # fp16 on CPU moves a probability or two; with --max-drop -1 any result counts as a drop
    result = run_ftune("export", str(lora_classifier), "--to", "merged", "--out", str(out), "--max-drop", "-1",
                       cwd=tmp_path)
    assert result.returncode == 1 and "FAILED" in result.stdout
    assert read_json(out / "export.json")["check"]["verdict"]["passed"] is False


def test_readme_snippets_for_merged_adapter_and_onnx_give_the_runs_prediction(lora_classifier, tiny_bert_dir, tmp_path):
    from ftune.api import predict

    from tests.conftest import readme_snippet, run_snippet

    ((_, ranked),) = list(predict(lora_classifier, ["a warm, funny film"]))
    expected_label = ranked[0][0]
    merged, adapter, onnx = tmp_path / "merged", tmp_path / "adapter", tmp_path / "onnx"
    for target, out in (("merged", merged), ("adapter", adapter), ("onnx", onnx)):
        result = run_ftune("export", str(lora_classifier), "--to", target, "--out", str(out), "--no-check",
                           cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    assert run_snippet(readme_snippet("merged", EXPORT_DIR=str(merged))) == expected_label
    assert run_snippet(readme_snippet("onnx", EXPORT_DIR=str(onnx))) == expected_label
    labels = read_json(lora_classifier / "model" / "ftune-model.json")["labels"]
    index = run_snippet(readme_snippet("adapter", EXPORT_DIR=str(adapter), BASE_MODEL=str(tiny_bert_dir)))
    assert labels[int(index)] == expected_label


def test_qlora_merges_into_its_dequantized_base_not_into_4_bit(tiny_llama_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    run = _train(tmp_path, tiny_llama_dir, "method=qlora", "train.learning_rate=0.01")
    out = tmp_path / "merged"
    result = run_ftune("export", str(run), "--to", "merged", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    check = read_json(out / "export.json")["check"]
    assert check["artifact"]["agreement"] >= 0.99, check
    config = read_json(out / "config.json")
    assert "quantization_config" not in config
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as weights:
        dtypes = {weights.get_tensor(name).dtype for name in weights.keys()}
    assert dtypes == {__import__("torch").float32}  # no packed 4-bit tensors left
