"""The TrainerCallback through which a trial's training reports to Optuna and is pruned.

Added to the trial's Trainer through ``ftune.training.loop.ADDED_CALLBACKS``; imports
transformers, so ``ftune.tuning.study`` imports this module only when a trial starts.
"""

from __future__ import annotations

from transformers import TrainerCallback


class ReportToTrial(TrainerCallback):
    """At each evaluation: report the validation metric to the trial at the optimizer step;
    when the pruner says so, stop training. The run then ends as any other (its kept weights
    evaluated and saved) and the trial is marked pruned."""

    def __init__(self, trial, metric_key: str, greater_is_better: bool):
        self.trial = trial
        self.metric_key = metric_key  # eval_accuracy, eval_f1, eval_loss
        self.sign = 1.0 if greater_is_better else -1.0
        self.best: float | None = None
        self.pruned_at: int | None = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.metric_key)
        if value is None or self.pruned_at is not None:
            return control
        value = float(value)
        if self.best is None or self.sign * (value - self.best) > 0:
            self.best = value
        self.trial.report(value, state.global_step)
        if self.trial.should_prune():
            self.pruned_at = state.global_step
            control.should_training_stop = True
        return control
