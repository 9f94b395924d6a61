"""Preference tuning (DPO, LoRA) over 2 real processes (DDP, gloo on CPU) against 1 process with
the same global batch, on a tiny random Llama: the same adapter and losses, one run directory
written by the main process alone. 6 pairs at 4 a step make each epoch's last step 2 pairs for
4 micro-batches, so each process also trains on a filler pair that must add nothing. About 40 s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, only_run_dir, read_json, run_ftune

PAIRS = FIXTURES / "gen" / "preference.jsonl"
COMMON = ["train.max_steps=6", "train.learning_rate=0.005", "train.precision=fp32", "method.dropout=0",
          "model.max_length=64", "objective.beta=0.5", "train.evals_per_epoch=1",
          "train.gradient_accumulation_steps=2"]


def _settings(model: Path, batch_size: int) -> list[str]:
    return [f"model={model}", f"data.train={PAIRS}", f"data.validation={PAIRS}", f"train.batch_size={batch_size}",
            *COMMON]


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory, tiny_llama_dir) -> Path:
    where = tmp_path_factory.mktemp("dpo-one-process")
    single = run_ftune("train", *_settings(tiny_llama_dir, 2), cwd=where)  # 2 pairs x 2 accumulation
    assert single.returncode == 0, single.stderr[-3000:]
    return only_run_dir(where)


def test_dpo_over_two_processes_trains_like_one_with_the_global_batch(tmp_path, tiny_llama_dir, single_process_run):
    from safetensors.torch import load_file

    # 1 pair x 2 accumulation x 2 processes
    launched = run_ftune("train", *_settings(tiny_llama_dir, 1), "train.processes=2", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "training over 2 processes (ddp, gloo)" in launched.stdout
    assert launched.stdout.count("validation preference pairs") == 1  # one report: the main process's
    run = only_run_dir(tmp_path)  # one run directory, written by the main process
    assert run.name.endswith("-lora-dpo") and single_process_run.name.endswith("-lora-dpo")
    single_log, log = ((r / "log.jsonl").read_text().splitlines() for r in (single_process_run, run))
    assert len(log) == len(single_log)  # no line written twice
    assert read_json(run / "status.json")["state"] == "finished"
    one, two = (read_json(r / "metrics.json") for r in (single_process_run, run))
    assert two["training"]["optimizer_steps"] == one["training"]["optimizer_steps"] == 6
    assert two["training"]["best_step"] == one["training"]["best_step"]

    a, b = (load_file(str(r / "model" / "adapter_model.safetensors")) for r in (single_process_run, run))
    assert a.keys() == b.keys() and a
    for name in a:
        assert (a[name] - b[name]).abs().max().item() < 1e-5, name
    losses = _losses(single_process_run), _losses(run)
    assert len(losses[0]) == 6 and len(losses[1]) == 6
    for x, y in zip(*losses):
        assert abs(x - y) < 1e-4, losses
    assert max(abs(x - losses[0][0]) for x in losses[0]) > 1e-3, losses[0]  # it trained
    after = one["validation"]["after"], two["validation"]["after"]
    assert abs(after[0]["reward_margin"] - after[1]["reward_margin"]) < 1e-4 and after[0]["reward_margin"] > 0
