"""The learning-rate schedule follows steps or the clock, whichever is further along."""

from __future__ import annotations

import pytest

from ftune.training import schedule as schedule_module
from ftune.training.schedule import ProgressSchedule


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(schedule_module.time, "monotonic", fake)
    return fake


def test_linear_warmup_then_decay_by_steps(clock):
    s = ProgressSchedule(total_steps=100, warmup_ratio=0.1, kind="linear", budget_seconds=None)
    assert s.multiplier(5) == pytest.approx(0.5)
    assert s.multiplier(10) == pytest.approx(1.0)
    assert s.multiplier(55) == pytest.approx(0.5)
    assert s.multiplier(100) == pytest.approx(0.0)


def test_cosine_and_constant(clock):
    cosine = ProgressSchedule(100, 0.0, "cosine", None)
    assert cosine.multiplier(50) == pytest.approx(0.5)
    assert ProgressSchedule(100, 0.1, "constant", None).multiplier(90) == 1.0


def test_time_budget_drives_the_schedule_when_it_is_further_along(clock):
    s = ProgressSchedule(total_steps=10_000, warmup_ratio=0.1, kind="linear", budget_seconds=600)
    s.start_clock()
    clock.now += 30  # 5% of the budget, 0.1% of the steps
    assert s.progress(10) == pytest.approx(0.05)
    assert s.multiplier(10) == pytest.approx(0.5)
    clock.now += 300  # 55%
    assert s.multiplier(20) == pytest.approx(0.5)
    assert not s.time_is_up()
    clock.now += 270
    assert s.time_is_up() and s.multiplier(30) == pytest.approx(0.0)
