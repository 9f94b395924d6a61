"""bench/gpu_sft.py without a GPU: its --dry-run plan, its refusal without CUDA, --help, and
the bf16 peak lookup and utilisation arithmetic. Loads no model; fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_sft.py"


def _run(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"))


@pytest.fixture(scope="module")
def bench():
    return load_script(SCRIPT, "gpu_sft_under_test")


def test_help():
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--model", "--data", "--rows", "--steps", "--warmup-steps", "--batch-size", "--techniques",
                   "--peak-tflops", "--dry-run"):
        assert option in done.stdout
    assert "--child" not in done.stdout  # internal


def test_dry_run_plan():
    done = _run("--dry-run", "--steps", "7", "--warmup-steps", "2", "--batch-size", "8")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["dry_run"] is True
    assert plan["precision"] == "bf16"
    assert plan["padding_free"] is True
    assert plan["collator"] == "ftune.data.collate.PaddingFreeCollator"
    assert plan["trainer"] == "ftune.training.trainer.ResponseLossTrainer"
    assert plan["model"] == "smollm2-135m"
    assert plan["data"].endswith(os.path.join("shared", "data", "alpaca", "alpaca_2k.jsonl"))
    assert sorted(plan["techniques"]) == ["lora", "qlora"]
    for way, technique in plan["techniques"].items():
        arguments = technique["training_arguments"]
        assert arguments["bf16"] is True and arguments["fp16"] is False
        assert arguments["learning_rate"] == 2e-4
        assert arguments["max_steps"] == 9  # warm-up + timed
        assert arguments["per_device_train_batch_size"] == 8
        assert arguments["use_cache"] is False
        assert technique["lora"] == {"r": 16, "alpha": 32.0, "dropout": 0.0, "target_modules": "all-linear"}
        assert technique["command"][technique["command"].index("--child") + 1] == way
        assert "--dry-run" not in technique["command"]
    assert plan["techniques"]["lora"]["quantization"] is None
    assert plan["techniques"]["qlora"]["quantization"] == {
        "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "bfloat16"}
    assert plan["matmul_measurement"]["shape"] == [8192, 8192, 8192]


def test_dry_run_one_technique_and_bad_names():
    plan = json.loads(_run("--dry-run", "--techniques", "qlora").stdout)
    assert list(plan["techniques"]) == ["qlora"]
    done = _run("--dry-run", "--techniques", "lora,dora")
    assert done.returncode != 0 and "--techniques" in done.stderr


def test_without_cuda_exits_with_a_clear_message():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: the script would run the benchmark")
    done = _run("--steps", "1")
    assert done.returncode != 0
    assert "needs a CUDA GPU" in done.stderr and "none is visible to torch" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100-PCIE-40GB", 312.0),
    ("NVIDIA L4", 121.0),
    ("NVIDIA L40S", 362.0),
    ("NVIDIA A10G", 125.0),
    ("NVIDIA GeForce RTX 4090", 165.0),
    ("NVIDIA GeForce RTX 3090", 71.0),
])
def test_peak_of_known_gpus(bench, name, peak):
    found = bench.gpu_peak_tflops(name)
    assert found["tflops"] == peak
    assert found["source"].startswith("datasheet table")


@pytest.mark.parametrize("name", ["Tesla T4", "NVIDIA H100 NVL", "NVIDIA GeForce RTX 3090 Ti", "NVIDIA L40"])
def test_unknown_gpu_has_no_peak(bench, name):
    found = bench.gpu_peak_tflops(name)
    assert found["tflops"] is None
    assert "--peak-tflops" in found["source"]


def test_override_wins(bench):
    assert bench.gpu_peak_tflops("Tesla T4", 65.0) == {"tflops": 65.0, "source": "--peak-tflops"}
    assert bench.gpu_peak_tflops("NVIDIA H100 80GB HBM3", 900.0)["tflops"] == 900.0


def test_utilization(bench):
    # 1e5 tokens/s x 4 x 139,364,352 FLOPs = 55.7 TFLOP/s
    flops = 4 * 139_364_352
    both = bench.utilization(1e5, flops, 989.0, 700.0)
    assert both["achieved_tflops"] == pytest.approx(55.746, abs=1e-3)
    assert both["mfu_vs_peak"] == pytest.approx(55.746 / 989.0, abs=1e-4)
    assert both["mfu_vs_measured_matmul"] == pytest.approx(55.746 / 700.0, abs=1e-4)
    measured_only = bench.utilization(1e5, flops, None, 700.0)
    assert measured_only["mfu_vs_peak"] is None
    assert measured_only["mfu_vs_measured_matmul"] == both["mfu_vs_measured_matmul"]
