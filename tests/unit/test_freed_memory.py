"""Freed memory handed back to the operating system (ftune.training.freed_memory): only while the
process holds more than its memory plan, at most every interval, and it does return memory."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ftune.training import freed_memory
from ftune.training.freed_memory import ReleaseFreedMemory, hold_to_plan, release_freed_memory


def _callback(monkeypatch, held):
    now = [0.0]
    calls = []
    monkeypatch.setattr(freed_memory, "release_freed_memory", lambda: calls.append(now[0]) or True)
    callback = ReleaseFreedMemory(interval_s=5.0, clock=lambda: now[0], held=lambda: held[0])
    return callback, now, calls


def test_trims_only_above_the_plan_and_at_most_every_interval(monkeypatch):
    held = [900.0]
    callback, now, calls = _callback(monkeypatch, held)
    step = lambda: callback.on_step_end(None, None, None)  # noqa: E731
    step()
    assert calls == []  # no plan yet: nothing to hold to
    callback.limit_bytes = 1000.0
    step()
    assert calls == []  # inside the plan
    held[0] = 1200.0
    step()
    assert calls == [0.0]
    now[0] = 4.0
    step()
    assert calls == [0.0]  # too soon
    now[0] = 5.5
    step()
    assert calls == [0.0, 5.5]
    held[0] = 800.0
    now[0] = 20.0
    step()
    assert calls == [0.0, 5.5] and callback.calls == 2


def test_hold_to_plan_sets_the_limit_of_the_trainer_s_callbacks():
    callback = ReleaseFreedMemory()
    trainer = SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[object(), callback]))
    hold_to_plan(trainer, 1.5e9)
    assert callback.limit_bytes == 1.5e9


def _resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists() or freed_memory._trim_function() is None,
                    reason="needs Linux with glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_system():
    # 64 KB tensors come from malloc's heap (below its mmap threshold); one kept at the end stops
    # free() from returning the heap's top on its own, so the freed ones stay resident until trimmed
    tensors = [torch.ones(16 * 1024) for _ in range(2000)]  # 2,000 x 64 KB = 125 MB
    keep = torch.ones(16 * 1024)
    del tensors
    before = _resident_mb()
    assert release_freed_memory()
    after = _resident_mb()
    assert before - after > 60, (before, after)
    del keep
