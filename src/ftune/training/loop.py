"""The one training loop every objective shares: transformers' Trainer plus ftune's callbacks.

An objective (classification, SFT, ...) brings its model, datasets, collator and validation
metric; everything else (device, seed, schedule, time budget, progress, best-model keeping,
Ctrl-C handling, the step log) lives here once.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ftune.config import Config, epochs
from ftune.errors import MethodNotApplicable
from ftune.training.checkpoints import checkpoint_step


@dataclass
class PreparedModel:
    task: Any  # TaskModel
    model: Any  # the model to train (after the technique is applied)
    trainable: int
    total: int
    plan: Any  # DevicePlan
    # the model loaded afresh with the technique applied: where training sharded the parameters
    # (train.distributed = fsdp, deepspeed-zero3), the main process gathers them into it
    rebuild: Callable[[], Any] | None = None


def prepare_model(config: Config, method, load_task: Callable[..., Any], echo=print) -> PreparedModel:
    """Seed, pick the device, load the model, apply the technique, report what trains."""
    import torch
    from transformers import set_seed

    from ftune.training.device import choose_precision, count_parameters, plan_device

    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    plan = plan_device(config.train.device, config.train.precision)
    set_seed(config.train.seed)
    task = load_task(**method.model_load_options(plan.device))
    problems = method.check(task)
    if problems:
        raise MethodNotApplicable("\n".join(problems))
    model = method.apply(task.model, task)
    plan = choose_precision(plan, model)
    trainable, total = count_parameters(model)
    echo(f"ftune: {config.model.name} + {config.method.name}: {trainable:,} of {total:,} parameters train "
         f"({trainable / total:.2%}); device {plan.device}, {plan.precision} ({plan.reason})")
    def rebuild():
        fresh = load_task(**method.model_load_options(plan.device))
        return method.apply(fresh.model, fresh).to(plan.device)

    return PreparedModel(task, model, trainable, total, plan, rebuild)


@dataclass
class GenerativeStart:
    run: Any  # RunDir, reserved: ``open_run`` creates it once the memory plan is made
    method: Any
    prepared: PreparedModel
    template: Any  # ftune.data.templates.Template


@dataclass
class TrainedRun:
    """A finished run: its directory and the metrics written to its ``metrics.json``."""

    run_dir: Path
    metrics: dict[str, Any]
    objective: str = ""  # classification | sft | dpo


def default_run_name(config: Config) -> str:
    """``<model>-<technique>``; the run directory adds a timestamp and a counter."""
    return f"{Path(config.model.name).name}-{config.method.name}"


# Set by ``ftune.training.launch`` for the processes it starts: the run directory to write.
RUN_PATH_VARIABLE = "FTUNE_RUN_PATH"


def start_run(config: Config, method, load_task: Callable[..., Any], suffix: str = "", echo=print, resume=None):
    """What every run does before training: reserve its directory (created only once the memory
    plan passes, by ``open_run``), or take the interrupted run's (``resume``: a RunDir with
    ``resume_from`` set), and load the model with the technique applied.
    Returns (run directory, prepared model)."""
    from ftune.errors import FtuneError
    from ftune.runs.run_dir import RunDir, unwritable_reason

    problem = unwritable_reason(resume.path if resume else config.run.dir)
    if problem:  # before minutes of loading and training, not at the first save
        where = f"--resume {resume.path}" if resume else f"run.dir = {config.run.dir!r}"
        raise FtuneError(f"{where}: cannot write there ({problem}); choose a writable place")
    launched = os.environ.get(RUN_PATH_VARIABLE)  # several processes: the path their launcher reserved
    run = resume or (RunDir(Path(launched)) if launched else RunDir.reserve(
        config.run.dir, config.run.name or "-".join(filter(None, [default_run_name(config), suffix]))))
    return run, prepare_model(config, method, load_task, echo)


def start_generative_run(config: Config, method, data, suffix: str, echo=print, resume=None) -> GenerativeStart:
    """``start_run`` for SFT and DPO, after the data's notices: the causal LM and the chat template."""
    from ftune.data.templates import resolve_template
    from ftune.models.load import load_causal_lm

    for notice in data.notices:
        echo(f"ftune: {notice}")
    run, prepared = start_run(
        config, method, lambda **options: load_causal_lm(config.model.name, config.model.trust_remote_code, **options),
        suffix, echo, resume)
    return GenerativeStart(run, method, prepared, resolve_template(config.data.template, prepared.task.tokenizer))


def open_run(run, config: Config, manifest: dict[str, Any], plan=None, echo=print) -> None:
    """Create the run directory (only now, after the memory plan and its check passed), with
    the resolved config, the data manifest and a status that says the run has started."""
    from ftune.settings.dump import render_config
    from ftune.training.distributed import current_world

    if not current_world().main:  # the main process alone writes the run
        return
    if run.resume_from is not None:
        _check_same_data(run, manifest)
        run.update_status(state="started", pid=os.getpid(), resumed_from_step=checkpoint_step(run.resume_from))
        echo(f"ftune: resuming {run.path} from {run.resume_from.name}")
        return
    run.make()
    run.write_text("config.yaml", render_config(config))
    run.write_json("data.json", manifest)
    if plan is not None:
        run.update_status(planned_peak_mb=round(plan.estimate_mb, 1), memory_budget_mb=round(plan.budget_mb, 1))
    echo(f"ftune: run directory {run.path}")


def _check_same_data(run, manifest: dict[str, Any]) -> None:
    """A resumed run must read the very files it started on."""
    import json

    from ftune.errors import FtuneError

    recorded = json.loads((run.path / "data.json").read_text()).get("files", [])
    before = {entry["role"]: entry.get("sha256") for entry in recorded}
    for entry in manifest.get("files", []):
        if before.get(entry["role"]) not in (None, entry.get("sha256")):
            raise FtuneError(f"--resume {run.path}: {entry['path']} ({entry['role']} data) has changed since the "
                             "run started; resuming would train on other data. Start a new run instead.")


def result_of_other_process(run, training: dict[str, Any], objective: str) -> TrainedRun | None:
    """After training, what a process other than the main one returns (it writes and measures
    nothing more); None on the main process, which goes on to evaluate and save."""
    from ftune.training.distributed import current_world

    return None if current_world().main else TrainedRun(run.path, {"training": training}, objective)


def finish_run(run, training: dict[str, Any]) -> None:
    """Mark the run finished (its model is saved): ``ftune`` stops reporting it as unfinished.
    Its checkpoints go: the saved model supersedes them."""
    from ftune.training.checkpoints import remove_checkpoints

    run.update_status(state="finished", last_step=training.get("optimizer_steps"),
                      peak_memory_mb=training.get("peak_training_memory_mb"))
    remove_checkpoints(run.path)


# TrainerCallbacks added to every Trainer ``build_trainer`` makes in this context, after ftune's own:
# ``ftune tune`` reports each evaluation to its trial (and stops a pruned one) through one.
# ``token = ADDED_CALLBACKS.set((callback,))`` ... ``ADDED_CALLBACKS.reset(token)``.
ADDED_CALLBACKS: ContextVar[tuple[Any, ...]] = ContextVar("ftune_added_callbacks", default=())

# Epochs added for train.min_steps are evaluated at most this many times in all: a 10-row
# file would otherwise pay an evaluation after every one of its hundreds of steps.
MAX_EXTENDED_EVALUATIONS = 20


@dataclass
class TrainingSession:
    trainer: Any
    prepared: PreparedModel
    stop: Any
    keep_best: Any
    run: Any = None  # RunDir
    memory_plan: Any = None  # ftune.training.memory_plan.MemoryPlan, once made
    tracking: Any = None  # ftune.tracking.Tracking (train.report_to)


def build_trainer(config: Config, method, prepared: PreparedModel, train_set, eval_set, collator, run, *,
                  metric: str, greater_is_better: bool = True, compute_metrics=None,
                  eval_batch_size: int | None = None, trainer_class=None, args_class=None,
                  extra_args: dict[str, Any] | None = None, extra_trainer_kwargs: dict[str, Any] | None = None,
                  learning_rate_key: str | None = None, min_steps: int = 0, echo=print) -> TrainingSession:
    """A Trainer over ``train_set`` that evaluates ``metric`` on ``eval_set`` each epoch.

    ``trainer_class`` / ``args_class`` swap in a Trainer subclass and its arguments class
    (TRL's DPOTrainer and DPOConfig); ``extra_args`` are passed to the arguments class.
    ``min_steps`` (classification: ``train.min_steps``) adds epochs over small data until
    training takes that many optimizer steps, unless ``train.max_steps`` or ``train.epochs``
    is set.
    """
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ftune.config.units import CheckpointInterval
    from ftune.tracking import open_tracking
    from ftune.training import faults
    from ftune.training.callbacks import (AgreedClock, CheckpointEvery, CrashPoints, KeepBest, ProgressBar, StepLog,
                                          StopAndEvaluate)
    from ftune.training.schedule import ProgressSchedule
    from ftune.training.freed_memory import ReleaseFreedMemory
    from ftune.training.distributed import current_world
    from ftune.training.sampling import WithFillers
    from ftune.training.strategies import trainer_arguments
    from ftune.training.trainer import ScheduledTrainer, SummedRowLossTrainer, with_schedule

    t = config.train
    world = current_world()
    # the global batch: train.batch_size x accumulation x processes
    steps_per_epoch = math.ceil(len(train_set) / (t.batch_size * t.gradient_accumulation_steps * world.size))
    total_steps = t.max_steps or max(1, math.ceil(steps_per_epoch * epochs(t)))
    eval_steps = max(1, math.ceil(steps_per_epoch / t.evals_per_epoch))
    if not t.max_steps and t.epochs is None and total_steps < min_steps:
        total_steps = min_steps
        eval_steps = max(eval_steps, math.ceil(total_steps / MAX_EXTENDED_EVALUATIONS))
        echo(f"ftune: {len(train_set):,} training rows make {steps_per_epoch} step(s) an epoch; training "
             f"{total_steps / steps_per_epoch:.0f} epochs instead of {epochs(t):g}, to reach train.min_steps = "
             f"{min_steps} optimizer steps" + (" (or train.max_minutes)" if t.max_minutes else ""))
    schedule = ProgressSchedule(total_steps, t.warmup_ratio, t.scheduler,
                                t.max_minutes * 60 if t.max_minutes else None)
    learning_rate = t.learning_rate or method.default_learning_rates[learning_rate_key or prepared.task.task]
    import tempfile

    arguments = dict(
        # nothing is saved there (train.keep=best keeps weights in memory); a scratch directory, so
        # the run directory is created only once training is sure to start
        output_dir=tempfile.mkdtemp(prefix="ftune-trainer-"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=eval_batch_size or t.eval_batch_size,
        # Without metrics to compute, keep only the loss: language-model logits for a whole
        # validation set would not fit in memory.
        prediction_loss_only=compute_metrics is None,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=learning_rate,
        optim="adamw_torch_fused",  # one fused kernel for all parameters (CPU and GPU), not a loop
        weight_decay=t.weight_decay,
        num_train_epochs=epochs(t),
        max_steps=total_steps,
        eval_strategy="steps", eval_steps=eval_steps,
        save_strategy="no",  # train.keep=best keeps the best weights in memory (KeepBest)
        logging_steps=max(1, min(50, total_steps // 100)),
        report_to="none",
        seed=t.seed, data_seed=t.seed,
        use_cpu=prepared.plan.device == "cpu",
        bf16=prepared.plan.precision == "bf16", fp16=prepared.plan.precision == "fp16",
        activation_checkpointing=t.gradient_checkpointing,
        train_sampling_strategy="group_by_length",  # similar lengths per batch: little padding
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    if world.distributed:
        arguments["ddp_backend"] = "gloo" if prepared.plan.device == "cpu" else "nccl"
        arguments["ddp_find_unused_parameters"] = False  # every trainable parameter takes part in each step
        trainer_class = trainer_class or SummedRowLossTrainer
        arguments.update(trainer_arguments(t.distributed))  # FSDP / DeepSpeed settings, none for DDP
    arguments.update(extra_args or {})
    args = (args_class or TrainingArguments)(**arguments)
    stop = StopAndEvaluate(schedule)
    keep_weights = t.keep == "best"
    if keep_weights and t.distributed == "deepspeed-zero3" and world.distributed:
        keep_weights = False  # each process holds a shard: a copy of it could not be put back whole
        echo("ftune: deepspeed-zero3 partitions every parameter: the final weights are kept, not the best ones")
    keep_best = KeepBest(metric, t.early_stopping_patience, greater_is_better, keep_weights=keep_weights)
    tracking = open_tracking(config, run, echo)  # train.report_to, main process only
    callbacks = [stop, keep_best, *tracking.callbacks, *ADDED_CALLBACKS.get()]
    if world.main:  # one progress bar and one log: the main process's
        callbacks += [ProgressBar(schedule), StepLog(run, schedule, prepared.plan.device)]
    if world.distributed:
        callbacks.append(AgreedClock(schedule))
    if prepared.plan.device == "cpu":  # malloc's heap grows with the variety of batch shapes
        callbacks.append(ReleaseFreedMemory())
    interval = CheckpointInterval.parse(t.checkpoint_every)
    if interval.enabled:  # over several processes its minutes read the agreed clock: all save at the same step
        callbacks.append(CheckpointEvery(interval, schedule))
    if os.environ.get(faults.VARIABLE):
        callbacks.append(CrashPoints())
    trainer = (with_schedule(trainer_class) if trainer_class else ScheduledTrainer)(
        schedule=schedule, model=prepared.model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=collator, compute_metrics=compute_metrics, callbacks=callbacks,
        **(extra_trainer_kwargs or {}),
    )
    if world.distributed:  # filler rows (label masked) for a process left without one; after the
        # trainer's own preparation of its rows (TRL's DPOTrainer tokenizes the pairs it is given)
        trainer.train_dataset = WithFillers(trainer.train_dataset)
    trainer.checkpoint_run, trainer.keep_checkpoints = run.path, t.keep_checkpoints
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return TrainingSession(trainer, prepared, stop, keep_best, run, tracking=tracking)


def run_training(session: TrainingSession, config: Config, echo=print) -> dict[str, Any]:
    """Train (a first Ctrl-C ends training but keeps the model), restore the best weights
    under ``train.keep=best``, and summarise the run."""
    from ftune.training.memory import peak_memory_mb, reset_peak_memory

    trainer = session.trainer
    device = session.prepared.plan.device
    phase_only = reset_peak_memory(device)
    resume_from, spent_before = session.run.resume_from if session.run else None, 0.0
    if resume_from is not None:
        from ftune.training.checkpoints import restore_ftune_state

        restore_ftune_state(trainer, resume_from, session.run.path)
        spent_before = session.stop.schedule.spent_before
    started = time.monotonic() - spent_before
    interrupted = False
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt:
        interrupted = True
        echo("\nftune: interrupted: evaluating and saving the model as it is (Ctrl-C again to abort)")
    seconds = time.monotonic() - started
    peak = peak_memory_mb(device)
    restored = session.keep_best.restore_best()
    if restored:
        looks = sum(session.keep_best.metric in entry for entry in trainer.state.log_history)
        echo(f"ftune: train.keep=best: the weights of step {session.keep_best.best_step}, the best of {looks} held-out "
             "evaluations; those evaluations chose them, so the held-out figures below read high")
    _gather_sharded_model(session, config)
    _drop_autocast_wrapper(trainer.model)
    shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    t, state, prepared = config.train, trainer.state, session.prepared
    # held-out evaluations run inside trainer.train(): their time is not training time
    evaluating = sum(entry.get("eval_runtime", 0.0) for entry in state.log_history)
    training_seconds = max(seconds - evaluating, 1e-9)
    return {
        "method": config.method.name, "model": config.model.name,
        "trainable_parameters": prepared.trainable, "total_parameters": prepared.total,
        "trainable_share": prepared.trainable / prepared.total,
        "optimizer_steps": state.global_step, "epochs": round(state.epoch or 0, 4),
        "seconds": round(seconds, 1), "evaluation_seconds": round(evaluating, 1),
        "examples_per_second": round(state.global_step * t.batch_size * t.gradient_accumulation_steps
                                     / training_seconds, 2),
        "tokens_per_second": round((state.num_input_tokens_seen or 0) / training_seconds, 1),
        "stopped_by_time_budget": session.stop.stopped_by_time,
        "interrupted": interrupted,
        "resumed_from_step": checkpoint_step(resume_from) if resume_from else None,
        "best_step": session.keep_best.best_step,  # the best held-out evaluation's step
        "kept": "best" if restored else "last",  # whose weights the run ends with, and their step
        "kept_step": session.keep_best.best_step if restored else state.global_step,
        "device": prepared.plan.device, "precision": prepared.plan.precision,
        "precision_reason": prepared.plan.reason,
        "model_memory_mb": _model_memory_mb(prepared.model),
        # RSS on CPU, allocated memory on GPU; of training alone where the platform allows
        "peak_training_memory_mb": peak, "peak_memory_scope": "training" if phase_only else "process",
        "memory_plan": session.memory_plan.as_dict() if session.memory_plan else None,
    }


def _gather_sharded_model(session: TrainingSession, config: Config) -> None:
    """FSDP and ZeRO-3 leave each process a shard of the weights: every process takes part in
    gathering them (accelerate's ``get_state_dict``), and the main one loads them into the
    model built afresh, which evaluation and saving then use."""
    from ftune.training.distributed import current_world
    from ftune.training.strategies import SHARDS_PARAMETERS

    trainer, world = session.trainer, current_world()
    if not world.distributed or config.train.distributed not in SHARDS_PARAMETERS:
        return
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not world.main:
        return
    model = session.prepared.rebuild()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    missing = [name for name in trainable if name not in state]
    if missing:
        from ftune.errors import FtuneError

        raise FtuneError(f"train.distributed = {config.train.distributed}: the gathered weights lack "
                         f"{len(missing)} trained tensor(s), e.g. {missing[0]}")
    model.load_state_dict(state, strict=False)
    trainer.model = model


def _drop_autocast_wrapper(model) -> None:
    """accelerate runs a mixed-precision model's forward under autocast by wrapping it; the
    wrapper outlives training. Unwrapped, everything measured after training (held-out
    metrics, samples, baselines on the same model) runs in fp32, as ``ftune eval`` will."""
    if "_original_forward" in getattr(model, "__dict__", {}):
        from accelerate.utils import extract_model_from_parallel

        extract_model_from_parallel(model, keep_fp32_wrapper=False)


def _model_memory_mb(model) -> float | None:
    """Parameters and buffers as stored (a 4-bit base counts at 4 bits), in MB."""
    footprint = getattr(model, "get_memory_footprint", None)
    try:
        return round(footprint() / 2**20, 1) if footprint else None
    except Exception:  # a measurement must never cost the run
        return None


