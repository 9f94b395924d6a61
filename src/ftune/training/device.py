"""Pick the device and the precision for it.

On CUDA, ``train.precision=auto`` is bf16 where the GPU supports it, else fp16. On a CPU it
is bf16 autocast only where the CPU multiplies bf16 natively (AVX-512 BF16 or AMX) *and* a
short matmul probe at the model's own shapes finds bf16 clearly faster; fp32 elsewhere. The
master weights and the optimizer state stay fp32 either way (autocast casts per operation).
The probe's result is kept per CPU, shapes and torch version (``precision.json`` in ftune's
cache), so every later run on this machine, a resumed one above all, decides the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

# bf16 must beat fp32 by this factor in the probe: a few percent would not pay for the
# rounding, and the probe's own noise is about that size.
BF16_MIN_SPEEDUP = 1.2
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class DevicePlan:
    device: str  # cpu | cuda | mps
    precision: str  # fp32 | bf16 | fp16, or "auto" until ``choose_precision`` has seen the model
    reason: str = ""  # why this precision, printed with the run and kept in metrics.json


def plan_device(device: str = "auto", precision: str = "auto") -> DevicePlan:
    """CUDA, then MPS, then CPU. The precision is decided here except ``auto`` on a CPU, which
    ``choose_precision`` settles once the model (its shapes) is loaded."""
    import torch

    from ftune.errors import FtuneError

    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise FtuneError("train.device = 'cuda': no CUDA GPU is visible to torch here")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FtuneError("train.device = 'mps': MPS is not available here")
    if precision != "auto":
        return DevicePlan(device, precision, "set by train.precision")
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return DevicePlan(device, "bf16", "auto: the GPU supports bf16")
        return DevicePlan(device, "fp16", "auto: the GPU lacks bf16")
    if device == "mps":
        return DevicePlan(device, "fp32", "auto: mixed precision is not used on mps")
    return DevicePlan(device, "auto")


def choose_precision(plan: DevicePlan, model) -> DevicePlan:
    """Settle ``auto`` on a CPU: bf16 when the CPU has native bf16 and a matmul at the model's
    hidden and feed-forward sizes runs at least ``BF16_MIN_SPEEDUP`` times faster in it."""
    if plan.precision != "auto":
        return plan
    if any(type(parameter).__name__ == "Params4bit" for parameter in model.parameters()):
        return replace(plan, precision="fp32", reason="auto: a 4-bit base computes in its own dtype on CPU")
    flags = native_bf16_flags()
    if not flags:
        return replace(plan, precision="fp32", reason="auto: this CPU has no native bf16 (AVX-512 BF16 or AMX)")
    hidden, width = model_shapes(model)
    speedup = measured_speedup(hidden, width, flags)
    measured = f"a {hidden}x{width} matmul ran {speedup:.2f}x faster in bf16 ({', '.join(flags)})"
    if speedup >= BF16_MIN_SPEEDUP:
        return replace(plan, precision="bf16", reason=f"auto: {measured}; fp32 master weights")
    return replace(plan, precision="fp32",
                   reason=f"auto: {measured}, below the {BF16_MIN_SPEEDUP}x that pays for bf16")


def measured_speedup(hidden: int, width: int, flags: list[str]) -> float:
    """``bf16_matmul_speedup``, measured once per CPU model, shapes and torch version and then
    read from the cache: a timing differs a little each time, a run's precision must not."""
    import json
    import os
    import platform

    import torch

    from ftune.models.registry import cache_dir

    key = f"{_cpu_model()}|{','.join(flags)}|{hidden}x{width}|torch {torch.__version__}|{platform.machine()}"
    path = cache_dir() / "precision.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), (int, float)):
        return float(known[key])
    speedup = bf16_matmul_speedup(hidden, width)
    known[key] = round(speedup, 3)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".precision-{os.getpid()}.json")
        staging.write_text(json.dumps(known, indent=1))
        staging.replace(path)
    except OSError:  # a read-only cache only costs the next run another probe
        pass
    return speedup


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def native_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The native-bf16 instruction sets this CPU reports (Linux; elsewhere none are assumed)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in NATIVE_BF16_FLAGS if flag in present]
    return []


def model_shapes(model) -> tuple[int, int]:
    """(hidden size, feed-forward width) from the model's config, with safe fallbacks."""
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or 768
    width = getattr(config, "intermediate_size", None) or getattr(config, "ffn_dim", None) or 4 * hidden
    return int(hidden), int(width)


def bf16_matmul_speedup(hidden: int, width: int, tokens: int = 1024, repeats: int = 5) -> float:
    """fp32 time over bf16 time for ``(tokens x hidden) @ (hidden x width)``, the best of a few
    timings each (about a tenth of a second in all on a laptop CPU)."""
    import torch

    def best_time(dtype) -> float:
        a = torch.randn(tokens, hidden, dtype=dtype)
        b = torch.randn(hidden, width, dtype=dtype)
        torch.mm(a, b)  # warm-up: first calls pick kernels
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        return best

    return best_time(torch.float32) / max(best_time(torch.bfloat16), 1e-9)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts. A 4-bit weight (bitsandbytes ``Params4bit``) is
    stored two values per byte element; it counts as the weights it holds."""
    trainable = total = 0
    for parameter in model.parameters():
        count = parameter.numel() * (2 if type(parameter).__name__ == "Params4bit" else 1)
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total
