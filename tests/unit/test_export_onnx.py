"""ONNX export of a LoRA classifier on a tiny random BERT: ONNX Runtime gives the PyTorch run's
probabilities at batch sizes and lengths other than the traced example's; --int8 writes a
smaller file that mostly agrees; runs ONNX cannot hold are refused before anything loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, only_run_dir, read_json, run_ftune

TEXTS = [  # lengths from 1 token to past the run's max_length (32), so truncation is crossed too
    "dull",
    "A warm and funny film that earns every one of its tears.",
    "The plot goes nowhere and the jokes land with a thud.",
    "great",
    "the acting is fine but the story is thin, the music is loud and the ending drags on and on "
    "for far too long after every thread has been tied up, which left the whole audience tired",
    "a charming little film",
    "nothing works here",
]


def _fixture_texts() -> list[str]:
    import csv

    with (FIXTURES / "reviews.csv").open() as handle:
        return [row["text"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def wide_bert_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """tiny_bert_dir's tokenizer and shape with weights drawn wide (std 1.0): texts then get clearly
    different probabilities, both labels are predicted, and int8 rounding has something to flip."""
    import torch
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("wide-bert")
    for path in tiny_bert_dir.iterdir():
        if path.is_file() and path.name not in ("config.json", "model.safetensors"):
            shutil.copy(path, directory / path.name)
    config = BertConfig.from_pretrained(tiny_bert_dir)
    config.initializer_range = 1.0
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def lora_classifier(tmp_path_factory, wide_bert_dir) -> Path:
    cwd = tmp_path_factory.mktemp("onnx-lora")
    result = run_ftune("train", f"model={wide_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}", "method=lora",
                       "train.max_steps=3", "train.batch_size=8", "model.max_length=32", "train.learning_rate=0.05",
                       cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(cwd)


@pytest.fixture(scope="module")
def fp32_artifact(tmp_path_factory, lora_classifier):
    from ftune.export.finished_run import FinishedRun
    from ftune.export.target import ExportOptions, get_target

    out = tmp_path_factory.mktemp("onnx-fp32")
    return get_target("onnx").write(FinishedRun.open(lora_classifier), out, ExportOptions(), echo=lambda *_: None)


def _torch_probabilities(run_dir: Path, texts: list[str], batch_size: int = 64) -> np.ndarray:
    from ftune.eval.classifier import predict_probabilities
    from ftune.export.finished_run import FinishedRun

    run = FinishedRun.open(run_dir)
    return predict_probabilities(run.load_model(), run.tokenizer(), texts, run.max_length, batch_size)


def test_onnx_runtime_gives_the_runs_probabilities_at_any_batch_size_and_length(lora_classifier, fp32_artifact):
    import onnx

    from ftune.export.finished_run import FinishedRun
    from ftune.export.target import get_target

    run = FinishedRun.open(lora_classifier)
    assert {"model.onnx", "labels.json", "tokenizer.json"} <= set(fp32_artifact.files)
    assert "model.onnx.data" not in fp32_artifact.files and "model.int8.onnx" not in fp32_artifact.files
    assert set(fp32_artifact.files) == {p.name for p in fp32_artifact.directory.iterdir()}
    assert fp32_artifact.runtime == "onnxruntime" and fp32_artifact.details["model_file"] == "model.onnx"
    assert read_json(fp32_artifact.directory / "labels.json") == {
        "labels": ["negative", "positive"], "max_length": 32,
        "inputs": ["input_ids", "attention_mask", "token_type_ids"], "model_file": "model.onnx"}
    graph = onnx.load(str(fp32_artifact.directory / "model.onnx")).graph
    for node in graph.input:  # (batch, sequence), both symbolic
        assert [d.dim_param for d in node.type.tensor_type.shape.dim] == ["batch", "sequence"], node.name
    assert [node.name for node in graph.output] == ["logits"]

    classifier = get_target("onnx").runtime(fp32_artifact, run)
    for batch_size in (64, 3):  # one batch of 7 up to 32 tokens; batches of 3, 3 and 1 (the traced: 2 x 8)
        classifier.batch_size = batch_size
        got = classifier.probabilities(TEXTS)
        expected = _torch_probabilities(lora_classifier, TEXTS, batch_size)
        assert got.shape == (len(TEXTS), 2)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
    # the comparison has teeth: the texts' probabilities differ, and the adapter changed them
    assert np.ptp(got[:, 0]) > 0.3
    model = run.load_model()
    from ftune.eval.classifier import predict_probabilities

    with run.method.disabled(model):
        base = predict_probabilities(model, run.tokenizer(), TEXTS, run.max_length)
    assert np.abs(base - got).max() > 1e-2


def test_int8_is_smaller_mostly_agrees_and_is_what_the_check_scores(lora_classifier, tmp_path):
    from ftune.export.onnx_runtime import OnnxClassifier
    from ftune.export.run_export import export_run
    from ftune.export.target import ExportOptions

    result = export_run(lora_classifier, "onnx", tmp_path / "int8", ExportOptions(int8=True), echo=lambda *_: None)
    out = result.directory
    assert {"model.onnx", "model.int8.onnx", "labels.json"} <= {Path(f).name for f in result.report["files"]}
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no pre-processing leftovers
    assert (out / "model.int8.onnx").stat().st_size < 0.5 * (out / "model.onnx").stat().st_size
    check = read_json(out / "export.json")["check"]
    assert check["artifact"]["runtime"] == "onnxruntime int8" and check["artifact"]["n"] == check["reference"]["n"]
    assert read_json(out / "labels.json")["model_file"] == "model.int8.onnx"

    texts = _fixture_texts()
    fp32 = OnnxClassifier.from_directory(out, "model.onnx").probabilities(texts)
    int8 = OnnxClassifier.from_directory(out).probabilities(texts)
    assert len(set(fp32.argmax(axis=1))) == 2  # both labels are predicted: agreement is not a given
    assert (int8.argmax(axis=1) == fp32.argmax(axis=1)).mean() >= 0.9
    assert np.abs(int8 - fp32).mean() < 0.1
    assert np.abs(int8 - fp32).max() > 1e-4  # the int8 weights were really used


def _crafted_run(directory: Path, source_run: Path, **changes) -> Path:
    """A run directory holding only ``model/ftune-model.json``: a refusal that loaded a model would fail."""
    info = {**read_json(source_run / "model" / "ftune-model.json"), **changes}
    (directory / "model").mkdir(parents=True)
    (directory / "model" / "ftune-model.json").write_text(json.dumps(info))
    return directory


def test_refusals_name_the_reason_from_the_run_files_alone(lora_classifier, tmp_path):
    from ftune.errors import FtuneError
    from ftune.export.finished_run import FinishedRun
    from ftune.export.run_export import export_run
    from ftune.export.target import ExportOptions
    from ftune.export.targets.onnx import OnnxTarget

    target = OnnxTarget()
    assert target.refusal(FinishedRun.open(lora_classifier), ExportOptions(int8=True)) is None
    prompt = FinishedRun.open(_crafted_run(tmp_path / "prompt", lora_classifier, method="prompt",
                                           method_options={}))
    refusal = target.refusal(prompt, ExportOptions())
    assert refusal and "'prompt'" in refusal and "do not fold" in refusal
    generative = FinishedRun.open(_crafted_run(tmp_path / "sft", lora_classifier, task="causal_lm", labels=None))
    refusal = target.refusal(generative, ExportOptions())
    assert refusal and "takes classifier runs" in refusal and "generative run" in refusal
    refusal = target.refusal(FinishedRun.open(lora_classifier), ExportOptions(dtype="bf16"))
    assert refusal and "--dtype bf16" in refusal
    with pytest.raises(FtuneError, match="cannot export this prompt run --to onnx"):
        export_run(prompt.path, "onnx", tmp_path / "never", echo=lambda *_: None)
    assert not (tmp_path / "never").exists()


def test_weights_past_the_protobuf_limit_go_to_listed_side_files(lora_classifier, fp32_artifact, tmp_path,
                                                                   monkeypatch):
    from ftune.export.finished_run import FinishedRun
    from ftune.export.onnx_runtime import OnnxClassifier
    from ftune.export.target import ExportOptions
    from ftune.export.targets import onnx as onnx_target

    monkeypatch.setattr(onnx_target, "EXTERNAL_DATA_BYTES", 0)  # as if the model were over 1.8 GB
    run = FinishedRun.open(lora_classifier)
    artifact = onnx_target.OnnxTarget().write(run, tmp_path, ExportOptions(int8=True), echo=lambda *_: None)
    assert artifact.details["external_data"] is True
    assert set(artifact.files) == {p.name for p in tmp_path.iterdir()}  # nothing stray, nothing unlisted
    assert {"model.onnx.data", "model.int8.onnx.data"} <= set(artifact.files)
    assert (tmp_path / "model.onnx.data").stat().st_size > (tmp_path / "model.onnx").stat().st_size / 2
    side = OnnxClassifier.from_directory(tmp_path, "model.onnx").probabilities(TEXTS)
    inside = OnnxClassifier.from_directory(fp32_artifact.directory, "model.onnx").probabilities(TEXTS)
    np.testing.assert_allclose(side, inside, atol=1e-6, rtol=0)
    assert onnx_target.OnnxTarget().runtime(artifact, run).probabilities(TEXTS).shape == (len(TEXTS), 2)
