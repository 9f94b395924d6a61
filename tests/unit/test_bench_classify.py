"""bench/classify_throughput.py: its command line, its report's keys, its refusal on a shared
CPU (bench/machine.py's QuietCpu), and a tiny real run on MiniLM and SST-2 when present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
SCRIPT = BENCH / "classify_throughput.py"
SST2 = REPO.parent / "shared" / "data" / "sst2" / "train.tsv"

RATE_KEYS = ["ftune_train_examples_per_s", "plain_train_examples_per_s", "train_speedup",
             "ftune_eval_examples_per_s", "pipeline_eval_examples_per_s", "pipeline_batched_eval_examples_per_s",
             "eval_speedup", "ftune_peak_rss_mb", "plain_peak_rss_mb", "ftune_train_tokens_per_s",
             "plain_train_tokens_per_s", "ftune_model_flops_utilization", "plain_model_flops_utilization"]
OTHER_KEYS = ["ftune_padding_share", "plain_padding_share", "ftune_precision", "plain_precision", "matmul_rates",
              "cpu_load_samples", "cpu_shared_allowed", "rows", "batch_size", "timed_steps",
              "ftune_matmul_parameters", "plain_matmul_parameters"]


def _run(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"))


@pytest.fixture
def machine(monkeypatch):
    """bench/machine.py as the script imports it (``from machine import ...``)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import machine

    return machine


@pytest.fixture
def bench():
    return load_script(SCRIPT, "classify_throughput_under_test")


def test_help():
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--rows", "--eval-rows", "--steps", "--warmup-steps", "--batch-size", "--precision",
                   "--allow-shared-cpu"):
        assert option in done.stdout
    assert "--child" not in done.stdout  # internal


def test_missing_data_is_a_clear_message(tmp_path):
    done = _run("--data", str(tmp_path / "absent.tsv"))
    assert done.returncode != 0
    assert "absent.tsv not found" in done.stderr and "SST-2" in done.stderr


def test_quiet_cpu_refuses_when_other_work_keeps_the_cpu_busy(machine, monkeypatch):
    quiet = machine.QuietCpu()
    monkeypatch.setattr(quiet, "busy_cores", lambda: 1.5)
    with pytest.raises(SystemExit) as refused:
        quiet.check("before ftune")
    assert "refusing to report" in str(refused.value.code)
    assert "1.50 CPU cores were busy with other work before ftune" in str(refused.value.code)
    assert quiet.samples == [{"moment": "before ftune", "busy_cores": 1.5}]


def test_quiet_cpu_passes_an_idle_cpu(machine, monkeypatch):
    quiet = machine.QuietCpu()
    monkeypatch.setattr(quiet, "busy_cores", lambda: 0.1)
    quiet.check("after plain")
    assert quiet.samples == [{"moment": "after plain", "busy_cores": 0.1}]


def _child(way: str) -> dict:
    result = {"examples_per_s": 40.0 if way == "ftune" else 10.0, "tokens_per_s": 400.0, "seconds": 1.0,
              "examples": 32, "real_tokens": 400, "real_tokens_per_example": 12.5,
              "padding_share": 0.2 if way == "ftune" else 0.9, "matmul_parameters": 11_000_000,
              "trainable_parameters": 300_000, "lora_targets": ["attention.self.query"], "peak_rss_mb": 800.0,
              "precision": "fp32", "eval_examples_per_s": 100.0 if way == "ftune" else 20.0, "eval_seconds": 1.0}
    if way == "ftune":
        result.update(precision_reason="set by train.precision", eval_batch_size=64)
    else:
        result.update(batched_eval_examples_per_s=80.0, batched_eval_seconds=1.0)
    return result


def _fake_children(bench, machine, monkeypatch, busy: float):
    """The parent with canned children, canned matmul rates and a CPU ``busy`` cores busy."""
    calls = []

    def fake_run(command, **kwargs):
        way = command[command.index("--child") + 1]
        calls.append(way)
        return subprocess.CompletedProcess(command, 0, json.dumps(_child(way)) + "\n", "")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    monkeypatch.setattr(machine, "matmul_rates", lambda hidden, width: {"fp32_gflops": 100.0, "bf16_gflops": 200.0})
    monkeypatch.setattr(machine.QuietCpu, "busy_cores", lambda self: busy)
    return calls


def _arguments(*extra: str):
    import argparse

    return argparse.Namespace(data="sst2.tsv", rows=64, eval_rows=64, steps=2, warmup_steps=1, batch_size=16,
                              precision="auto", allow_shared_cpu="--allow-shared-cpu" in extra, child=None)


def test_parent_refuses_on_a_shared_cpu(bench, machine, monkeypatch):
    calls = _fake_children(bench, machine, monkeypatch, busy=1.5)
    with pytest.raises(SystemExit) as refused:
        bench.run_parent(_arguments())
    assert "refusing to report" in str(refused.value.code)
    assert calls == []  # refused before any child ran


def test_parent_report_with_shared_cpu_allowed(bench, machine, monkeypatch):
    calls = _fake_children(bench, machine, monkeypatch, busy=1.5)
    report = bench.run_parent(_arguments("--allow-shared-cpu"))
    assert calls == ["ftune", "plain"]
    assert report["cpu_shared_allowed"] is True
    assert [s["moment"] for s in report["cpu_load_samples"]] == [
        "before matmul rates", "before ftune", "after ftune", "before plain", "after plain"]
    assert report["train_speedup"] == 4.0 and report["eval_speedup"] == 5.0
    assert report["pipeline_batched_eval_examples_per_s"] == 80.0
    # 400 tokens/s x 4 FLOPs x 11M weights = 17.6 GFLOP/s, against the 200 GFLOP/s bf16 rate
    assert report["ftune_achieved_gflops"] == 17.6 and report["ftune_model_flops_utilization"] == 0.088
    assert not set(RATE_KEYS + OTHER_KEYS) - set(report)


def test_parent_quiet_cpu_is_not_marked_shared(bench, machine, monkeypatch):
    _fake_children(bench, machine, monkeypatch, busy=0.1)
    report = bench.run_parent(_arguments())
    assert report["cpu_shared_allowed"] is False
    assert all(sample["busy_cores"] == 0.1 for sample in report["cpu_load_samples"])


@pytest.mark.integration
@pytest.mark.slow  # about 25 s on 2 cores: two MiniLM loads, one step each way
@pytest.mark.extended  # the report's logic is tested on canned children above
def test_tiny_real_run():
    if not SST2.is_file():
        pytest.skip(f"{SST2} absent (SST-2 lives in ../shared/data)")
    from ftune.models.registry import model_problem

    problem = model_problem("minilm-l6")
    if problem:
        pytest.skip(f"minilm-l6: {problem}")
    # --allow-shared-cpu: the test must pass beside other work; such figures are never reported.
    # --batch-size 8 and one timed step: the padded recipe's fp32 steps are the slow part.
    done = _run("--rows", "32", "--eval-rows", "16", "--steps", "1", "--warmup-steps", "1", "--batch-size", "8",
                "--allow-shared-cpu", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert not set(RATE_KEYS + OTHER_KEYS) - set(report), set(RATE_KEYS + OTHER_KEYS) - set(report)
    for key in RATE_KEYS:
        assert report[key] > 0, key
    assert report["cpu_shared_allowed"] is True
    assert (report["rows"], report["batch_size"], report["timed_steps"]) == (32, 8, 1)
    assert report["ftune_precision"] in ("fp32", "bf16") and report["plain_precision"] == "fp32"
    assert report["ftune_matmul_parameters"] == report["plain_matmul_parameters"] > 0
    assert report["lora_targets"] == ["attention.output.dense", "attention.self.key", "attention.self.query",
                                      "attention.self.value"]
    assert 0 <= report["ftune_padding_share"] < report["plain_padding_share"] < 1
    assert len(report["cpu_load_samples"]) == 5
