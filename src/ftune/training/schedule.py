"""Learning-rate schedules that follow progress by steps *or* by time, whichever is further.

With ``train.max_minutes`` the run ends on the clock, usually long before the step count a
schedule was sized for; a step-based schedule would then never decay. Here progress is
``max(step / total_steps, elapsed / budget)``, so warmup and decay fit the time budget.
"""

from __future__ import annotations

import math
import time


class ProgressSchedule:
    def __init__(self, total_steps: int, warmup_ratio: float, kind: str, budget_seconds: float | None):
        self.total_steps = max(1, total_steps)
        self.warmup_ratio = warmup_ratio
        self.kind = kind
        self.budget_seconds = budget_seconds
        self.started = time.monotonic()
        self.spent_before = 0.0  # seconds a resumed run had already trained
        # several processes: the time they agreed on at the start of the current step
        # (``ftune.training.distributed.AgreedClock``), read in place of this process's clock
        self.agreed_seconds: float | None = None

    def start_clock(self) -> None:
        self.started = time.monotonic() - self.spent_before

    def local_elapsed(self) -> float:
        return time.monotonic() - self.started

    def elapsed(self) -> float:
        return self.local_elapsed() if self.agreed_seconds is None else self.agreed_seconds

    def progress(self, step: int) -> float:
        fraction = step / self.total_steps
        if self.budget_seconds:
            fraction = max(fraction, self.elapsed() / self.budget_seconds)
        return min(1.0, fraction)

    def time_is_up(self) -> bool:
        return bool(self.budget_seconds) and self.elapsed() >= self.budget_seconds

    def multiplier(self, step: int) -> float:
        progress = self.progress(step)
        if self.warmup_ratio > 0 and progress < self.warmup_ratio:
            return max(progress / self.warmup_ratio, 1e-3)
        if self.kind == "constant":
            return 1.0
        decay = (progress - self.warmup_ratio) / max(1e-9, 1.0 - self.warmup_ratio)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * decay))
        return max(0.0, 1.0 - decay)
