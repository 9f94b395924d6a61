"""Every registered technique through the real training loop (Trainer, memory plan, best-model
selection, saving), for a few steps, on classification and on SFT: a new technique module is
exercised here without any edit to this file."""

from __future__ import annotations

import math

import pytest

from ftune.errors import ConfigError
from ftune.methods import build_method, method_names
from tests.conftest import FIXTURES

STEPS = 2


def train_briefly(tmp_path, model_dir, method: str, data, **model):
    import ftune

    return ftune.train({"model": {"name": str(model_dir), **model}, "method": method, "data": {"train": str(data)},
                        "train": {"max_steps": STEPS, "batch_size": 4}, "generate": {"samples": 0},
                        "run": {"dir": str(tmp_path)}}, echo=lambda *_: None)


def check_run(run, method: str) -> None:
    training = run.metrics["training"]
    assert training["optimizer_steps"] == STEPS and training["method"] == method
    assert 0 < training["trainable_parameters"] <= training["total_parameters"]
    assert (method == "full") == (training["trainable_parameters"] == training["total_parameters"])
    files = {p.name for p in (run.run_dir / "model").iterdir()}
    adapter = build_method(method).saves_adapter
    assert ("model.safetensors" not in files) == adapter, files  # an adapter ships without the base weights
    losses = [v for v in (run.metrics.get("validation", {}).get("after", {}).get("loss"),
                          run.metrics.get("validation", {}).get("model", {}).get("loss")) if v is not None]
    assert losses and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("method", method_names())
def test_every_technique_trains_a_classifier_in_the_trainer(method, tmp_path, tiny_bert_dir):
    run = train_briefly(tmp_path, tiny_bert_dir, method, FIXTURES / "reviews.csv", max_length=32)
    assert run.objective == "classification"
    check_run(run, method)


@pytest.mark.parametrize("method", method_names())
def test_every_technique_trains_sft_in_the_trainer(method, tmp_path, tiny_llama_dir):
    if method == "bitfit":  # Llama has no bias terms: refused from its config.json, before data or weights load
        with pytest.raises(ConfigError, match="no bias terms"):
            train_briefly(tmp_path, tiny_llama_dir, method, FIXTURES / "gen" / "alpaca.jsonl", max_length=96)
        return
    run = train_briefly(tmp_path, tiny_llama_dir, method, FIXTURES / "gen" / "alpaca.jsonl", max_length=96)
    assert run.objective == "sft"
    check_run(run, method)
