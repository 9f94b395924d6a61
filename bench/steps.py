"""What a benchmark child records while it trains: the batches it built and when each optimizer
step ended, so tokens/s is counted over the same timed steps for every way."""

from __future__ import annotations

import time


class CountingCollator:
    """Wraps a collator and records the examples, real (non-pad) tokens and all tokens of every batch."""

    def __init__(self, inner):
        self.inner = inner
        self.examples: list[int] = []
        self.real_tokens: list[int] = []
        self.all_tokens: list[int] = []

    def __call__(self, features):
        batch = self.inner(features)
        total = batch["input_ids"].numel()
        self.examples.append(int(batch["input_ids"].shape[0]))
        self.real_tokens.append(int(batch["attention_mask"].sum()) if "attention_mask" in batch else total)
        self.all_tokens.append(total)
        return batch


def timed_trainer_callback():
    """A TrainerCallback whose ``times`` holds ``time.perf_counter()`` at every step's end."""
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    return StepTimes()
