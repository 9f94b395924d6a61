"""The Trainer callback that starts a run's trackers as training begins."""

from __future__ import annotations

from transformers import TrainerCallback


class StartTracking(TrainerCallback):
    """First of the tracking callbacks: the trackers' records exist before transformers'
    MLflow / TensorBoard / wandb callbacks log into them. Main process only."""

    def __init__(self, tracking):
        self.tracking = tracking

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.tracking.start()
