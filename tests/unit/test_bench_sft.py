"""bench/sft_throughput.py's report, with canned children: the lever rows, utilisation and the
refusal on a shared CPU (the children themselves train SmolLM2 for minutes; run by hand)."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import load_script

BENCH = Path(__file__).resolve().parents[2] / "bench"

TOKENS_PER_S = {"ftune": 300.0, "ftune_fp32": 200.0, "ftune_unfused_adamw": 290.0, "ftune_eager_attention": 250.0,
                "ftune_fp32_frozen_weights": 280.0, "ftune_flash_short_rows": 270.0,
                "ftune_checkpointed_head": 290.0, "ftune_peft_lora_layers": 285.0, "trl": 100.0, "padded": 30.0}


@pytest.fixture
def machine(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import machine

    return machine


@pytest.fixture
def bench(machine):
    return load_script(BENCH / "sft_throughput.py", "sft_throughput_under_test")


def _fake(bench, machine, monkeypatch, busy: float) -> list[str]:
    calls = []

    def fake_run(command, **kwargs):
        way = command[command.index("--child") + 1]
        calls.append(way)
        child = {"tokens_per_s": TOKENS_PER_S[way], "seconds": 10.0, "real_tokens": 3000, "padding_share": 0.1,
                 "precision": "fp32" if way == "ftune_fp32" else "bf16", "flops_per_token": 500_000_000,
                 "peak_rss_mb": 4000.0 if way.startswith("ftune") else 6000.0}
        return subprocess.CompletedProcess(command, 0, "log line\n" + json.dumps(child) + "\n", "")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    monkeypatch.setattr(machine, "matmul_rates", lambda hidden, width: {"fp32_gflops": 150.0, "bf16_gflops": 300.0})
    monkeypatch.setattr(machine.QuietCpu, "busy_cores", lambda self: busy)
    return calls


def _arguments(allow_shared=False, levers="fp32,unfused_adamw,eager_attention,fp32_frozen_weights,flash_short_rows,"
                                          "checkpointed_head,peft_lora_layers"):
    return argparse.Namespace(model="smollm2-135m", rows=400, batch_size=8, steps=12, levers=levers,
                              allow_shared_cpu=allow_shared)


def test_each_lever_gets_its_row_and_utilisation_is_against_the_bf16_rate(bench, machine, monkeypatch):
    calls = _fake(bench, machine, monkeypatch, busy=0.05)
    report = bench.run_parent(_arguments())
    assert calls == ["ftune", "ftune_fp32", "ftune_unfused_adamw", "ftune_eager_attention", "ftune_fp32_frozen_weights",
                     "ftune_flash_short_rows", "ftune_checkpointed_head", "ftune_peft_lora_layers", "trl", "padded"]
    assert report["speedup_vs_trl"] == 3.0 and report["speedup"] == 10.0
    assert report["levers"]["fp32"]["defaults_speedup"] == 1.5  # what bf16 bought
    assert report["levers"]["eager_attention"]["defaults_speedup"] == 1.2
    assert report["levers"]["fp32_frozen_weights"]["defaults_speedup"] == round(300 / 280, 3)
    assert report["levers"]["flash_short_rows"]["defaults_speedup"] == round(300 / 270, 3)
    assert report["levers"]["checkpointed_head"]["defaults_speedup"] == round(300 / 290, 3)
    assert report["levers"]["peft_lora_layers"]["defaults_speedup"] == round(300 / 285, 3)
    # 300 tokens/s x 0.5 GFLOP a token = 150 GFLOP/s: half the 300 GFLOP/s bf16 rate, all of fp32's
    assert report["model_flops_utilization"] == 0.5 and report["model_flops_utilization_fp32"] == 1.0
    assert report["ftune_memory_vs_trl"] == round(4000 / 6000, 3)
    assert report["cpu_shared_allowed"] is False and len(report["cpu_load_samples"]) == 21


def test_a_shared_cpu_is_refused_before_any_child(bench, machine, monkeypatch):
    calls = _fake(bench, machine, monkeypatch, busy=1.2)
    with pytest.raises(SystemExit) as refused:
        bench.run_parent(_arguments())
    assert "refusing to report" in str(refused.value.code) and calls == []
    report = bench.run_parent(_arguments(allow_shared=True, levers=""))
    assert report["cpu_shared_allowed"] is True and report["levers"] == {}


def test_an_unknown_lever_is_named(bench, machine, monkeypatch):
    _fake(bench, machine, monkeypatch, busy=0.0)
    with pytest.raises(SystemExit, match="--levers: unknown turbo"):
        bench.run_parent(_arguments(levers="fp32,turbo"))


def test_the_ftune_child_counts_the_batches_it_trained_not_the_memory_checks(bench, tiny_llama_dir, monkeypatch):
    """ftune's memory check collates the longest batch before training starts: counted at the
    collator, every timed step's tokens would be the step before's."""
    from ftune.training.trainer import ResponseLossTrainer

    trained: list[int] = []  # real tokens of each batch the loss saw: the memory check's, then each step's
    compute_loss = ResponseLossTrainer.compute_loss

    def seen(self, model, inputs, *args, **kwargs):
        trained.append(int(inputs["attention_mask"].sum()))
        return compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(ResponseLossTrainer, "compute_loss", seen)
    monkeypatch.setattr(bench, "WARMUP_STEPS", 1)
    data = Path(__file__).resolve().parents[1] / "fixtures" / "gen" / "alpaca.jsonl"
    args = argparse.Namespace(model=str(tiny_llama_dir), data=str(data), rows=12, batch_size=2, steps=4,
                              child="ftune")
    child = bench.run_child(args)
    steps = trained[-5:]  # one pass a step (warm-up + 4 timed), batches of several sizes
    assert len(trained) > 5 and len(set(steps)) > 2
    assert child["real_tokens"] == sum(steps[1:])
