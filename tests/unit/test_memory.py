"""The training-phase peak: reset before training, so earlier allocations do not count."""

from __future__ import annotations

import sys

import pytest

from ftune.training.memory import peak_memory_mb, reset_peak_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM reset is Linux-only")
def test_peak_after_reset_counts_only_later_allocations():
    early = bytearray(400 * 2**20)  # a large allocation before "training"
    early[::4096] = b"x" * len(early[::4096])  # touch every page so it is resident
    assert peak_memory_mb("cpu") > 400
    del early
    assert reset_peak_memory("cpu")
    after_reset = peak_memory_mb("cpu")
    later = bytearray(100 * 2**20)
    later[::4096] = b"y" * len(later[::4096])
    peak = peak_memory_mb("cpu")
    del later
    assert after_reset + 90 < peak < after_reset + 400
