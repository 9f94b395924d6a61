"""transformers' Trainer with ftune's learning-rate schedule; everything else stays stock."""

from __future__ import annotations

from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer

from ftune.train.schedule import ProgressSchedule


class ScheduledTrainer(Trainer):
    """Trainer whose learning rate follows a ``ProgressSchedule`` (steps or time, whichever
    is further along), so a time budget gets a full warmup and decay."""

    def __init__(self, *args, schedule: ProgressSchedule, **kwargs):
        self.progress_schedule = schedule
        super().__init__(*args, **kwargs)

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, self.progress_schedule.multiplier)
            self._created_lr_scheduler = True
        return self.lr_scheduler
