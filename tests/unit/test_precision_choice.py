"""train.precision=auto on a CPU: bf16 autocast only with native bf16 and a measured gain."""

from __future__ import annotations

import pytest

from ftune.training import device
from ftune.training.device import DevicePlan, choose_precision, native_bf16_flags


class Config:
    hidden_size, intermediate_size = 64, 256


class Model:
    config = Config()

    def parameters(self):
        return iter(())


def test_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx2\n")
    assert native_bf16_flags(cpuinfo) == ["avx512_bf16"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n")
    assert native_bf16_flags(cpuinfo) == ["amx_bf16"]
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")  # AVX-512 alone only emulates bf16
    assert native_bf16_flags(cpuinfo) == []
    assert native_bf16_flags(tmp_path / "absent") == []


@pytest.mark.parametrize("flags, speedup, precision, why", [
    ([], 3.0, "fp32", "no native bf16"),
    (["avx512_bf16"], 2.4, "bf16", "2.40x faster in bf16"),
    (["amx_bf16"], 1.05, "fp32", "below the 1.2x"),
])
def test_auto_on_cpu_follows_the_flags_and_the_probe(monkeypatch, flags, speedup, precision, why):
    probed = []
    monkeypatch.setattr(device, "native_bf16_flags", lambda: flags)
    monkeypatch.setattr(device, "bf16_matmul_speedup", lambda hidden, width: probed.append((hidden, width)) or speedup)
    plan = choose_precision(DevicePlan("cpu", "auto"), Model())
    assert plan.precision == precision and why in plan.reason
    assert probed == ([(64, 256)] if flags else [])  # the probe uses the model's own shapes
    assert choose_precision(DevicePlan("cpu", "auto"), Model()) == plan
    assert len(probed) == (1 if flags else 0)  # measured once, then read back: every run decides alike


def test_a_chosen_precision_is_kept(monkeypatch):
    monkeypatch.setattr(device, "bf16_matmul_speedup", lambda *a: pytest.fail("no probe for a fixed precision"))
    assert choose_precision(DevicePlan("cpu", "fp32", "set by train.precision"), Model()).precision == "fp32"
    assert device.plan_device("cpu", "bf16") == DevicePlan("cpu", "bf16", "set by train.precision")
    assert device.plan_device("cpu", "auto").precision == "auto"  # settled once the model is loaded


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTUNE_CACHE", str(tmp_path / "cache"))


def test_the_probe_measures_a_real_matmul():
    assert device.bf16_matmul_speedup(32, 64, tokens=64, repeats=2) > 0
