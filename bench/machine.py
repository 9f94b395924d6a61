"""What the benchmarks measure about the machine itself, in the same run as the models.

- ``matmul_rates``: the torch matmul rate in FLOP/s, fp32 and bf16, at a model's own shapes
  (a batch of tokens times its hidden size times its feed-forward width), so utilisation is
  measured against what this machine reaches today, not against a datasheet.
- ``matmul_parameters``: the weights a training step multiplies by (every ``nn.Linear``); a
  LoRA step costs about 4 FLOPs per such weight per token (forward, and the backward pass to the
  inputs; the frozen weights get no gradient), full fine-tuning about 6.
- ``QuietCpu``: a benchmark child measured while another heavy process shares the CPU reads
  wrong, and the ratio between children most of all. It samples the CPU's busy share while the
  benchmark itself is idle, before and after each child, and refuses past a threshold.
"""

from __future__ import annotations

import os
import time


def matmul_rates(hidden: int, width: int, tokens: int = 2048, seconds: float = 1.0) -> dict[str, float]:
    """GFLOP/s of ``(tokens x hidden) @ (hidden x width)`` and its transpose product, fp32 and
    bf16, the best of repeated timings (torch's own threads, as training uses them)."""
    import torch

    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(tokens, hidden, dtype=dtype)
        b = torch.randn(hidden, width, dtype=dtype)
        c = torch.randn(tokens, width, dtype=dtype)
        flops = 2 * tokens * hidden * width * 2
        best = float("inf")
        deadline = time.perf_counter() + seconds
        for _ in range(3):  # warm-up
            torch.mm(a, b), torch.mm(c, b.t())
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.mm(a, b), torch.mm(c, b.t())
            best = min(best, time.perf_counter() - start)
        rates[f"{name}_gflops"] = round(flops / best / 1e9, 1)
    return rates


def matmul_parameters(model) -> int:
    """Weights of every ``nn.Linear`` (a tied LM head counts: it is a matmul), LoRA's own included."""
    from torch import nn

    return sum(module.weight.numel() for module in model.modules() if isinstance(module, nn.Linear))


def utilization(units_per_second: float, flops_per_unit: float, rates: dict[str, float]) -> dict[str, float]:
    """Achieved training FLOP/s and its share of the measured fp32 and bf16 matmul rates."""
    achieved = units_per_second * flops_per_unit / 1e9
    return {"achieved_gflops": round(achieved, 1),
            "model_flops_utilization": round(achieved / rates["bf16_gflops"], 3),
            "model_flops_utilization_fp32": round(achieved / rates["fp32_gflops"], 3)}


def _busy_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class QuietCpu:
    """Refuses to report when something else keeps the CPU busy while the benchmark is idle."""

    def __init__(self, max_busy_cores: float = 0.35, sample_seconds: float = 2.0, allow_shared: bool = False):
        self.max_busy_cores = max_busy_cores
        self.allow_shared = allow_shared  # smoke tests only: figures measured so are never reported
        self.sample_seconds = sample_seconds
        self.samples: list[dict[str, float]] = []

    def busy_cores(self) -> float | None:
        """Cores kept busy by other processes over ``sample_seconds`` (None where /proc is absent)."""
        if not os.path.exists("/proc/stat"):
            return None
        busy_before, total_before = _busy_jiffies()
        time.sleep(self.sample_seconds)
        busy_after, total_after = _busy_jiffies()
        share = (busy_after - busy_before) / max(1, total_after - total_before)
        return share * (os.cpu_count() or 1)

    def check(self, moment: str) -> None:
        """Sample now; exit with the reason when the CPU is shared."""
        import sys

        busy = self.busy_cores()
        if busy is None:
            return
        self.samples.append({"moment": moment, "busy_cores": round(busy, 2)})
        if busy > self.max_busy_cores and not self.allow_shared:
            sys.exit(f"refusing to report: {busy:.2f} CPU cores were busy with other work {moment} "
                     f"(at most {self.max_busy_cores} allowed); a shared CPU distorts the ratios. "
                     "Stop the other heavy processes and run again.")
