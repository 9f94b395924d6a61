"""Every refusal of `ftune export`, decided from a run's files alone: crafted run directories
with no weights in them, so a refusal that tried to load a model would fail here."""

from __future__ import annotations

import json

import pytest

from ftune.errors import FtuneError
from ftune.export.finished_run import FinishedRun
from ftune.export.run_export import export_run
from ftune.export.target import ExportOptions, get_target, target_names


def crafted_run(tmp_path, *, task="causal_lm", method="lora", base="smollm2-135m", options=None, extra=None,
                adapter_config=None):
    run = tmp_path / f"{task}-{method}"
    (run / "model").mkdir(parents=True)
    info = {"task": task, "base_model": base, "method": method, "method_options": options or {},
            "max_length": 64, "labels": ["neg", "pos"] if task == "classification" else None,
            "template": "chat", "config": {}, **(extra or {})}
    (run / "model" / "ftune-model.json").write_text(json.dumps(info))
    if adapter_config is not None:
        (run / "model" / "adapter_config.json").write_text(json.dumps(adapter_config))
    return run


def refusal(run, target, **options):
    return get_target(target).refusal(FinishedRun.open(run), ExportOptions(**options))


def test_every_target_is_registered():
    assert set(target_names()) >= {"merged", "adapter", "gguf", "gguf-lora", "onnx"}


@pytest.mark.parametrize("method", ["prompt", "prefix", "ptuning", "adapter"])
def test_techniques_without_weights_to_fold_are_refused_for_merged_and_gguf(tmp_path, method):
    run = crafted_run(tmp_path, method=method)
    for target in ("merged", "gguf"):
        message = refusal(run, target)
        assert message and repr(method) in message, (target, message)
    assert refusal(run, "gguf-lora")
    if method != "adapter":  # PEFT prompt learning ships as a PEFT adapter
        assert refusal(run, "adapter") is None
        assert "it can be exported --to adapter" in refusal(run, "merged")


def test_gguf_lora_refuses_dora_ia3_and_trained_whole_layers(tmp_path):
    for method, options in (("dora", {"use_dora": True}), ("lora", {"use_dora": True}), ("ia3", {}), ("loha", {})):
        message = refusal(crafted_run(tmp_path / method, method=method, options=options), "gguf-lora")
        assert message and "--to gguf merges" in message, (method, message)
    whole = crafted_run(tmp_path / "whole", adapter_config={"modules_to_save": ["lm_head"]})
    assert "lm_head" in refusal(whole, "gguf-lora")
    assert refusal(crafted_run(tmp_path / "plain", adapter_config={"modules_to_save": None}), "gguf-lora") is None


def test_targets_refuse_the_other_kind_of_run(tmp_path):
    classifier = crafted_run(tmp_path, task="classification", base="minilm-l6")
    for target in ("gguf", "gguf-lora"):
        assert "takes generative runs; this is a classifier run" in refusal(classifier, target)
    assert "takes classifier runs; this is a generative run" in refusal(crafted_run(tmp_path), "onnx")


def test_gguf_refuses_a_base_that_is_not_llama(tmp_path):
    base = tmp_path / "gpt2-like"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert "'gpt2'" in refusal(crafted_run(tmp_path, base=str(base)), "gguf")


def test_bad_options_are_refused(tmp_path):
    run = crafted_run(tmp_path)
    assert "--quant q4_k" in refusal(run, "gguf", quant="q4_k")
    assert "--dtype int4" in refusal(run, "merged", dtype="int4")


def test_export_run_refuses_before_writing_anything(tmp_path):
    run = crafted_run(tmp_path, method="prompt")
    with pytest.raises(FtuneError, match="cannot export this prompt run --to merged"):
        export_run(run, "merged", echo=lambda *_: None)
    assert not (run / "exports").exists()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "status.json").write_text(json.dumps({"state": "unfinished"}))
    with pytest.raises(FtuneError, match=r"not a finished ftune run \(status: unfinished\)"):
        export_run(unfinished, "merged", echo=lambda *_: None)
    with pytest.raises(FtuneError, match="unknown export target"):
        export_run(run, "tflite", echo=lambda *_: None)
