"""Memory that training freed, handed back to the operating system on a CPU when the process
holds more than its memory plan.

glibc's malloc keeps what freed tensors held for the next allocations, and once a large block
has been freed it serves blocks up to that size from its heap instead of mapping them afresh;
with batches of many different shapes, the heap grows well past what any one step holds. A
MiniLM + LoRA classifier on SST-2 (batches of 16 rows, 3 to 66 tokens) went from 1,137 MB
resident after the memory check to 1,638 MB after 400 steps, with its live tensors (137 MB)
and Python objects unchanged, and to 1.8 GB after about 900 steps, while the memory plan,
which prices one step, read 1,288 MB. ``malloc_trim`` returns the free parts of the heap:
called every 25 steps (about 3 s) it held the same run at 1,229 MB at step 400, for 1 ms a
call. What it leaves is mostly oneDNN's cache of matmul kernels per shape (about 0.2 GB there;
``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0`` removes it at 2-3x slower steps, so it stays).

Returned pages are faulted in again when the heap grows back: trimming after every SmolLM2
SFT step made those steps 1.18-1.37x slower. So ``ReleaseFreedMemory`` trims only while the
process, between steps, holds more than the plan's estimate (``hold_to_plan``), at most every
``interval_s`` seconds, on a CPU under glibc; a run inside its plan never pays for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time

from transformers import TrainerCallback

from ftune.training.memory_probe import process_bytes

_libc = None


def _trim_function():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _libc = False
    return getattr(_libc, "malloc_trim", None) if _libc else None


def release_freed_memory() -> bool:
    """Hand the free parts of malloc's heap back to the operating system; False where the C
    library has no ``malloc_trim`` (not glibc)."""
    trim = _trim_function()
    if trim is None:
        return False
    trim(0)
    return True


class ReleaseFreedMemory(TrainerCallback):
    """After an optimizer step, ``release_freed_memory`` when the process holds more than
    ``limit_bytes`` (None: no limit set, nothing done), at most every ``interval_s`` seconds."""

    def __init__(self, interval_s: float = 5.0, clock=time.monotonic, held=lambda: process_bytes("cpu")):
        self.interval_s, self.clock, self.held = interval_s, clock, held
        self.limit_bytes: float | None = None
        self.last = float("-inf")
        self.calls = 0

    def on_step_end(self, args, state, control, **kwargs):
        if self.limit_bytes is None or self.clock() - self.last < self.interval_s:
            return
        if self.held() > self.limit_bytes and release_freed_memory():
            self.calls += 1
            self.last = self.clock()


def hold_to_plan(trainer, estimate_bytes: float) -> None:
    """Give the trainer's ``ReleaseFreedMemory`` callbacks the plan's estimate as their limit."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ReleaseFreedMemory):
            callback.limit_bytes = estimate_bytes
