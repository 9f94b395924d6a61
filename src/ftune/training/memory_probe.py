"""What memory a run has and what its model costs, measured on this machine: the process's
memory now, what is available (RAM, the cgroup's limit, or free device memory), the budget
that follows, and the activations a model keeps per token (see ``memory_plan`` for the use)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from ftune.config.units import parse_memory_size
from ftune.training.memory_plan import DEFAULT_SHARE, MB, ActivationCost, format_size


def process_bytes(device: str) -> float:
    """Memory the process holds now: resident set on CPU, allocated device memory on CUDA."""
    if device == "cuda":
        import torch

        return float(torch.cuda.memory_allocated())
    status = Path("/proc/self/status")
    match = re.search(r"VmRSS:\s+(\d+) kB", status.read_text()) if status.exists() else None
    if match:
        return float(match.group(1)) * 1024
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def available_bytes(device: str) -> float | None:
    """Memory that can still be taken: free device memory on CUDA; on Linux, MemAvailable
    (or the cgroup's remaining limit, when lower)."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return float(free)
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    match = re.search(r"MemAvailable:\s+(\d+) kB", meminfo.read_text())
    available = float(match.group(1)) * 1024 if match else None
    limit, current = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        if limit.exists() and limit.read_text().strip() != "max":
            remaining = float(limit.read_text()) - float(current.read_text())
            available = remaining if available is None else min(available, remaining)
    except (OSError, ValueError):
        pass
    return available


def memory_budget(limit: str | None, device: str, baseline: float) -> tuple[float, str] | None:
    """(budget in bytes, where it came from); None where the free memory cannot be read."""
    if limit:
        return parse_memory_size(limit), f"train.memory_limit={limit}"
    free = available_bytes(device)
    if free is None:
        return None
    where = "free GPU memory" if device == "cuda" else "available memory"
    from ftune.training.distributed import current_world

    sharing = current_world().local_size if device == "cpu" else 1  # processes on one machine share its RAM
    if sharing > 1:
        return (baseline + DEFAULT_SHARE * free / sharing,
                f"{DEFAULT_SHARE:.0%} of the {format_size(free / MB)} {where}, shared by {sharing} processes, + this process")
    return baseline + DEFAULT_SHARE * free, f"{DEFAULT_SHARE:.0%} of the {format_size(free / MB)} {where} + this process"


def measure_activations(forward: Callable[[Any, Any], Any], vocab_size: int, device: str,
                        parameters: list, lengths: tuple[int, int, int] = (32, 64, 128)) -> ActivationCost:
    """Fit ``ActivationCost`` from what autograd saves for three synthetic 2-row batches (the
    second row 3/4 as long, so the attention mask is real). ``forward(input_ids, attention_mask)``
    runs the model as training does; RNG state is restored afterwards."""
    import numpy as np
    import torch

    weights = {p.data_ptr() for p in parameters}
    saved = []
    for width in lengths:
        seen: dict[int, int] = {}

        def pack(tensor):
            if torch.is_tensor(tensor):
                storage = tensor.untyped_storage()
                if storage.data_ptr() not in weights:
                    seen[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.random.fork_rng(devices=[] if device == "cpu" else None):
            generator = torch.Generator().manual_seed(0)
            ids = torch.randint(low=min(10, vocab_size - 1), high=vocab_size, size=(2, width), generator=generator)
            mask = torch.ones_like(ids)
            mask[1, (3 * width) // 4:] = 0
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = forward(ids.to(device), mask.to(device))
            del out
        saved.append(sum(seen.values()))
    rows = 2
    matrix = np.array([[1.0, rows * w, rows * w * w] for w in lengths])
    constant, per_token, per_square = np.linalg.solve(matrix, np.array(saved, dtype=float))
    if per_square < 0:  # linear attention memory (a fused kernel): refit without the square term
        per_square = 0.0
        (constant, per_token), *_ = np.linalg.lstsq(matrix[:, :2], np.array(saved, dtype=float), rcond=None)
    return ActivationCost(max(float(constant), 0.0), max(float(per_token), 0.0), float(per_square))
