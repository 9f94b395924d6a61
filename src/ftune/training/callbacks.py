"""Trainer callbacks: progress with an ETA, the step log, the time budget (and the clock several
processes agree on), best-model keeping, checkpoints on an interval, and the test-only crash points."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ftune.config.units import CheckpointInterval
from ftune.runs.run_dir import RunDir
from ftune.training.schedule import ProgressSchedule

BEST_WEIGHTS = "best-weights.safetensors"


class ProgressBar(TrainerCallback):
    """One tqdm bar over optimizer steps; with a time budget its total follows the clock."""

    def __init__(self, schedule: ProgressSchedule):
        self.schedule = schedule
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        # smoothing=0: the ETA uses the average rate, steady across batches of mixed length
        self.bar = tqdm(total=state.max_steps, unit="step", desc="training", dynamic_ncols=True, smoothing=0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is None:
            return
        budget = self.schedule.budget_seconds
        if budget and state.global_step:
            by_time = math.ceil(state.global_step * budget / max(self.schedule.elapsed(), 1e-6))
            self.bar.total = max(state.global_step, min(state.max_steps, by_time))
        self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", epoch=f"{state.epoch:.2f}", refresh=False)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.bar is not None and metrics:
            shown = {k.removeprefix("eval_"): v for k, v in metrics.items() if k in ("eval_accuracy", "eval_f1", "eval_loss")}
            self.bar.write(f"  step {state.global_step}: " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.total = self.bar.n
            self.bar.refresh()
            self.bar.close()


class StepLog(TrainerCallback):
    """Append every logged value (loss, learning rate, eval metrics) to ``log.jsonl``, and keep
    the run's status (last step, peak memory so far) current, so a run the system kills
    leaves a trace of how far it got."""

    def __init__(self, run: RunDir, schedule: ProgressSchedule, device: str = "cpu"):
        self.run = run
        self.schedule = schedule
        self.device = device

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:  # the longest batch: its peak is the one that matters
            self._status(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                      "seconds": round(self.schedule.elapsed(), 2)}
            record.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
            self.run.append_log(record)
            self._status(state)

    def _status(self, state) -> None:
        from ftune.training.memory import peak_memory_mb

        self.run.update_status(last_step=state.global_step, peak_memory_mb=peak_memory_mb(self.device))


class StopAndEvaluate(TrainerCallback):
    """Stop when the time budget is spent, and evaluate at the last step whatever ended it,
    so the final weights always take part in best-model selection."""

    def __init__(self, schedule: ProgressSchedule):
        self.schedule = schedule
        self.stopped_by_time = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.schedule.start_clock()

    def save_checkpoint_state(self, directory) -> dict[str, Any]:
        return {"elapsed_seconds": self.schedule.elapsed(), "stopped_by_time": self.stopped_by_time}

    def restore_checkpoint_state(self, state: dict[str, Any], directory) -> None:
        """The time budget goes on from what the interrupted run had spent."""
        self.schedule.spent_before = float(state["elapsed_seconds"])
        self.stopped_by_time = bool(state["stopped_by_time"])

    def on_step_end(self, args, state, control, **kwargs):
        if self.schedule.time_is_up():
            self.stopped_by_time = True
            control.should_training_stop = True
        if control.should_training_stop or state.global_step >= state.max_steps:
            control.should_evaluate = True
        return control


class KeepBest(TrainerCallback):
    """Follow the best held-out evaluation and stop early after ``patience`` evaluations
    without improvement. With ``keep_weights`` (``train.keep=best``) also keep that
    evaluation's trainable weights in memory (no checkpoint files) and restore them at the end;
    otherwise the run keeps its final weights, so its held-out figures did not choose them."""

    def __init__(self, metric: str, patience: int | None, greater_is_better: bool = True,
                 keep_weights: bool = False):
        self.metric = f"eval_{metric}"
        self.patience = patience
        self.keep_weights = keep_weights
        self.sign = 1.0 if greater_is_better else -1.0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, Any] | None = None
        self.evaluations_without_gain = 0
        self.model = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is None or self.model is None:
            return
        if self.best_value is None or self.sign * (value - self.best_value) > 0:
            self.best_value, self.best_step = value, state.global_step
            self.evaluations_without_gain = 0
            if self.keep_weights:
                # on the CPU: a copy beside the weights on a GPU would double their memory (full fine-tuning)
                self.best_state = {n: p.detach().to("cpu", copy=True)
                                   for n, p in self.model.named_parameters() if p.requires_grad}
        else:
            self.evaluations_without_gain += 1
            if self.patience and self.evaluations_without_gain >= self.patience:
                control.should_training_stop = True
        return control

    def save_checkpoint_state(self, directory) -> dict[str, Any]:
        """The best weights so far beside the checkpoint, and the early-stopping count."""
        if self.best_state is not None:
            from safetensors.torch import save_file

            save_file({n: t.contiguous() for n, t in self.best_state.items()}, str(Path(directory) / BEST_WEIGHTS))
        return {"best_value": self.best_value, "best_step": self.best_step,
                "evaluations_without_gain": self.evaluations_without_gain}

    def restore_checkpoint_state(self, state: dict[str, Any], directory) -> None:
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.evaluations_without_gain = state["evaluations_without_gain"]
        path = Path(directory) / BEST_WEIGHTS
        if path.is_file():
            from safetensors.torch import load_file

            self.best_state = load_file(str(path))

    def restore_best(self) -> bool:
        """Put the kept weights back; False where none were kept (``train.keep=last``, or no
        evaluation ran)."""
        if self.best_state is None or self.model is None:
            return False
        import torch

        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                if name in self.best_state:
                    parameter.copy_(self.best_state[name])
        return True


class CheckpointEvery(TrainerCallback):
    """Ask the Trainer for a checkpoint every N optimizer steps or every N minutes of training
    (not at the last step: the finished model is saved instead)."""

    def __init__(self, interval: CheckpointInterval, schedule: ProgressSchedule):
        self.interval = interval
        self.schedule = schedule
        self.last_saved = 0.0  # training seconds at the last checkpoint

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_training_stop or state.global_step >= state.max_steps:
            return control
        if self.interval.steps and state.global_step % self.interval.steps == 0:
            control.should_save = True
        elif self.interval.seconds and self.schedule.elapsed() - self.last_saved >= self.interval.seconds:
            control.should_save = True
        return control

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_saved = self.schedule.spent_before  # a resumed run last saved where it resumes

    def on_save(self, args, state, control, **kwargs):
        self.last_saved = self.schedule.elapsed()


class CrashPoints(TrainerCallback):
    """``FTUNE_KILL_AT=step:N`` or ``evaluate:N`` (``ftune.training.faults``): SIGKILL there."""

    def on_step_end(self, args, state, control, **kwargs):
        from ftune.training import faults

        faults.maybe_kill("step", state.global_step)

    def on_evaluate(self, args, state, control, **kwargs):
        from ftune.training import faults

        faults.maybe_kill("evaluate", state.global_step)


class AgreedClock(TrainerCallback):
    """Before every optimizer step, the processes agree on the time spent (the largest of their
    clocks): the time budget and the learning rate then read the same value everywhere."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_train_begin(self, args, state, control, **kwargs):
        self.schedule.agreed_seconds = self.schedule.spent_before

    def on_step_begin(self, args, state, control, **kwargs):
        import torch
        import torch.distributed as dist

        local = torch.tensor([self.schedule.local_elapsed()], dtype=torch.float64, device=args.device)
        dist.all_reduce(local, op=dist.ReduceOp.MAX)
        self.schedule.agreed_seconds = float(local.item())
