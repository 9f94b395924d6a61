"""transformers' Trainer (or a subclass such as TRL's DPOTrainer) with ftune's learning-rate
schedule; everything else stays stock."""

from __future__ import annotations

from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer

from ftune.train.schedule import ProgressSchedule


class ScheduleMixin:
    """Makes the learning rate follow a ``ProgressSchedule`` (steps or time, whichever is
    further along), so a time budget gets a full warmup and decay."""

    def __init__(self, *args, schedule: ProgressSchedule, **kwargs):
        self.progress_schedule = schedule
        super().__init__(*args, **kwargs)

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, self.progress_schedule.multiplier)
            self._created_lr_scheduler = True
        return self.lr_scheduler


class ScheduledTrainer(ScheduleMixin, Trainer):
    """The plain Trainer with ftune's schedule."""


def with_schedule(trainer_class: type) -> type:
    """``trainer_class`` (a Trainer subclass, e.g. TRL's DPOTrainer) with ftune's schedule."""
    return type(f"Scheduled{trainer_class.__name__}", (ScheduleMixin, trainer_class), {})
