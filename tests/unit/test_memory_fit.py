"""The memory plan applied to real training on a tiny Llama: split batches give the unsplit
run's losses, the first batch is the longest, a budget that cannot hold the run stops it
before its directory exists, and a run killed by the system is reported by the next command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ftune.settings import load_config
from tests.conftest import FIXTURES, read_json, run_ftune

ALPACA = FIXTURES / "gen" / "alpaca.jsonl"


def sft_config(tiny_llama_dir, tmp_path, *extra: str):
    return load_config(None, [f"model={tiny_llama_dir}", f"data.train={ALPACA}", "data.validation_fraction=0.25",
                              "method=lora", "method.dropout=0", "train.batch_size=8", "train.max_steps=3",
                              "train.learning_rate=0.01", "model.max_length=96", "generate.samples=0",
                              f"run.dir={tmp_path}", *extra])


def logged_losses(run_dir) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_a_low_budget_splits_batches_and_the_loss_equals_the_unsplit_runs(tiny_llama_dir, tmp_path, monkeypatch):
    from ftune.training import memory_fit
    from ftune.training.memory_plan import make_plan
    from ftune.recipes.dispatch import train_for_objective as train_sft

    whole = train_sft(sft_config(tiny_llama_dir, tmp_path / "whole"), echo=lambda *_: None)
    whole_plan = whole.metrics["training"]["memory_plan"]
    assert whole_plan["micro_batch_tokens"] is None  # the tiny model fits many times over

    def low_budget(inputs, budget, source, **options):
        # room for the fixed part and about two of the longest rows: the planner must split
        room = inputs.fixed_bytes() + 2.2 * inputs.step_activation_bytes(1, inputs.longest_row)
        return make_plan(inputs, room, "a budget set low on purpose", **options)

    from ftune.training import trainer as trainer_module

    pieces_per_batch = []

    def counting_split(batch, max_tokens, pairs=False):
        pieces = split_batch(batch, max_tokens, pairs)
        pieces_per_batch.append(len(pieces))
        return pieces

    split_batch = trainer_module.split_batch
    monkeypatch.setattr(memory_fit, "make_plan", low_budget)
    monkeypatch.setattr(trainer_module, "split_batch", counting_split)
    split = train_sft(sft_config(tiny_llama_dir, tmp_path / "split"), echo=lambda *_: None)
    plan = split.metrics["training"]["memory_plan"]
    assert plan["micro_batch_tokens"] is not None
    assert plan["micro_batch_tokens"] < plan["longest_batch_tokens"]
    assert max(pieces_per_batch) > 1  # training really ran batches in several passes

    losses_whole, losses_split = logged_losses(whole.run_dir), logged_losses(split.run_dir)
    assert len(losses_whole) == len(losses_split) == 3
    assert losses_split == pytest.approx(losses_whole, rel=1e-5)
    after_whole = whole.metrics["validation"]["after"]["loss"]
    assert split.metrics["validation"]["after"]["loss"] == pytest.approx(after_whole, rel=1e-5)
    assert after_whole != pytest.approx(whole.metrics["validation"]["before"]["loss"], rel=1e-3)  # it trained


def test_the_first_batch_is_the_longest(tiny_llama_dir, tmp_path):
    """transformers' length-grouped sampler puts the longest example in the first batch, so the
    first optimizer step is the one with the most padded tokens: an out-of-memory shows at once."""
    from ftune.data.collate import PaddedCausalCollator
    from ftune.training.loop import build_trainer, prepare_model
    from ftune.data.encode import EncodedDataset
    from ftune.runs.run_dir import RunDir
    from ftune.methods import build_method
    from ftune.models.load import load_causal_lm
    from ftune.training.trainer import ResponseLossTrainer

    import random

    rng = random.Random(0)
    items = []
    for _ in range(100):
        n = rng.randint(3, 60)
        items.append({"input_ids": list(range(5, 5 + n)), "labels": list(range(5, 5 + n))})
    for seed in (1, 2, 3):
        config = sft_config(tiny_llama_dir, tmp_path, "train.batch_size=8", f"train.seed={seed}")
        method = build_method("lora", {})
        prepared = prepare_model(config, method, lambda **o: load_causal_lm(str(tiny_llama_dir), **o), echo=lambda *_: None)
        tokenizer = prepared.task.tokenizer
        session = build_trainer(config, method, prepared, EncodedDataset(items), EncodedDataset(items[:8]),
                                PaddedCausalCollator.from_tokenizer(tokenizer), RunDir(tmp_path / "unused"),
                                metric="loss", greater_is_better=False, trainer_class=ResponseLossTrainer)
        batches = list(session.trainer.get_train_dataloader())
        sizes = [b["input_ids"].numel() for b in batches]
        assert batches[0]["input_ids"].shape[1] == max(len(i["input_ids"]) for i in items)
        assert sizes[0] == max(sizes), (seed, sizes[:5])


def test_a_budget_below_the_model_stops_before_training_and_leaves_no_run(tiny_llama_dir, tmp_path):
    result = run_ftune("train", f"model={tiny_llama_dir}", f"data.train={ALPACA}", "train.memory_limit=50MB",
                       "generate.samples=0", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "does not fit in memory" in result.stderr
    assert "train.memory_limit=50MB" in result.stderr and "What would help" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_killed_run_is_reported_by_the_next_command(tmp_path):
    from ftune.runs.run_dir import RunDir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = RunDir.create(tmp_path / "runs", "killed")
    run.update_status(pid=dead.pid, last_step=7, peak_memory_mb=23900.0, planned_peak_mb=11000.0,
                      memory_budget_mb=19000.0)
    alive = RunDir.create(tmp_path / "runs", "alive")  # this process: still running
    first = run_ftune("config", cwd=tmp_path)
    assert first.returncode == 0
    assert f"{run.path.name} did not finish" in first.stderr and "after optimizer step 7" in first.stderr
    assert "23,900 MB" in first.stderr and "lack of memory" in first.stderr
    assert alive.path.name not in first.stderr
    assert read_json(run.path / "status.json")["state"] == "unfinished"
    second = run_ftune("config", cwd=tmp_path)
    assert "did not finish" not in second.stderr  # said once


def test_when_a_row_does_not_fit_checkpointing_trains_to_the_same_loss(tmp_path, tiny_llama_dir, monkeypatch):
    """A deeper tiny Llama (checkpointing saves memory only with several blocks): a budget below
    one row's activations turns gradient checkpointing on, and training gives the same losses."""
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    from ftune.training import memory_fit
    from ftune.training.memory_plan import make_plan
    from ftune.recipes.dispatch import train_for_objective as train_sft

    deep = tmp_path / "deep-llama"
    shutil.copytree(tiny_llama_dir, deep)
    config = LlamaConfig.from_pretrained(deep)
    config.num_hidden_layers = 8
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(deep)

    whole = train_sft(sft_config(deep, tmp_path / "whole"), echo=lambda *_: None)

    def below_one_row(inputs, budget, source, **options):
        room = inputs.fixed_bytes() + 0.8 * inputs.step_activation_bytes(1, inputs.longest_row)
        return make_plan(inputs, room, "a budget below one row", **options)

    monkeypatch.setattr(memory_fit, "make_plan", below_one_row)
    checkpointed = train_sft(sft_config(deep, tmp_path / "ckpt"), echo=lambda *_: None)
    plan = checkpointed.metrics["training"]["memory_plan"]
    assert plan["gradient_checkpointing"] and plan["micro_batch_tokens"]
    # the same sums in another order (micro-batches are cut to their own longest row, so
    # attention's matmuls run over other widths): fp32 rounding apart
    assert logged_losses(checkpointed.run_dir) == pytest.approx(logged_losses(whole.run_dir), rel=5e-5)


def test_the_memory_probe_and_check_run_in_the_precision_training_uses(tiny_llama_dir, tmp_path, monkeypatch):
    """accelerate turns bf16 autocast on only once training starts; a probe or check measured in
    fp32 would plan for about twice the activations a bf16 run holds (and the check's own pass
    would set the run's peak memory)."""
    import torch

    from ftune.recipes.dispatch import train_for_objective as train_sft
    from ftune.training import memory_fit
    from ftune.training.trainer import ResponseLossTrainer

    seen: dict[str, list] = {"probe": [], "check": []}
    activation_cost = memory_fit._activation_cost

    def watched_probe(model, *args, **kwargs):
        # what the probe's linear layers compute in (bf16 under autocast)
        hooks = [m.register_forward_hook(lambda _m, _i, out: seen["probe"].append(out.dtype))
                 for m in model.modules() if isinstance(m, torch.nn.Linear)]
        try:
            return activation_cost(model, *args, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()

    compute_loss = ResponseLossTrainer.compute_loss

    def watched_loss(self, model, inputs, *args, **kwargs):
        if not self.state.global_step and not seen["check"]:  # the check runs before the first step
            seen["check"].append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(memory_fit, "_activation_cost", watched_probe)
    monkeypatch.setattr(ResponseLossTrainer, "compute_loss", watched_loss)
    train_sft(sft_config(tiny_llama_dir, tmp_path, "train.precision=bf16", "train.max_steps=1"), echo=lambda *_: None)
    assert seen["probe"] and set(seen["probe"]) == {torch.bfloat16}
    assert seen["check"] == [(True, torch.bfloat16)]
