"""What a benchmark child records while it trains: the batches it trained and when each
optimizer step ended, so tokens/s is counted over the same timed steps for every way."""

from __future__ import annotations

import time


class TrainedBatches:
    """Records the examples, real (non-pad) tokens and all tokens of every batch that
    ``trainer.training_step`` receives: the batches trained, one per optimizer step without
    accumulation. Counting at the collator instead would also count batches the training loop
    never trains (ftune's memory check collates the longest batch before training starts), and
    shift every timed step's tokens by one batch."""

    def __init__(self, trainer):
        self.examples: list[int] = []
        self.real_tokens: list[int] = []
        self.all_tokens: list[int] = []
        step = trainer.training_step

        def counted_step(model, inputs, *args, **kwargs):
            self.record(inputs)
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted_step

    def record(self, batch) -> None:
        total = batch["input_ids"].numel()
        self.examples.append(int(batch["input_ids"].shape[0]))
        self.real_tokens.append(int(batch["attention_mask"].sum()) if "attention_mask" in batch else total)
        self.all_tokens.append(total)


def timed_trainer_callback():
    """A TrainerCallback whose ``times`` holds ``time.perf_counter()`` at every step's end."""
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    return StepTimes()
