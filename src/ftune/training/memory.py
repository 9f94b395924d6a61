"""Peak memory of the training phase alone, on CPU (process RSS) or GPU (allocated memory).

A process's lifetime peak also counts data loading and the TF-IDF baseline, which can hide
what a technique itself costs. On Linux the peak-RSS mark (VmHWM) can be reset just before
training starts; elsewhere the lifetime peak is what we have.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path


def reset_peak_memory(device: str) -> bool:
    """Start a new peak measurement; False when only the lifetime peak can be read."""
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def peak_memory_mb(device: str) -> float:
    """Peak since the last reset: allocated device memory on CUDA, resident memory otherwise."""
    if device == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
        if match:
            return round(int(match.group(1)) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
