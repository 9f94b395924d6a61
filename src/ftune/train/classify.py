"""Fine-tune a text classifier end to end: data -> model -> technique -> Trainer -> eval -> ship."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftune.config import Config, config_to_dict
from ftune.config.dump import render_config
from ftune.errors import FtuneError


@dataclass
class ClassificationRun:
    run_dir: Path
    metrics: dict[str, Any]


def train_classifier(config: Config, echo=print) -> ClassificationRun:
    """Train, evaluate against the baselines, and save a reloadable run directory."""
    from ftune.data.prepare import build_classification_data
    from ftune.methods import build_method
    from ftune.train.run_dir import RunDir

    method = build_method(config.method.name, config.method.options)
    data = build_classification_data(config.data, config.train.seed)
    for notice in data.notices:
        echo(f"ftune: {notice}")
    split = data.manifest["split"]
    echo(f"ftune: {split['train']:,} training rows, {split['validation']:,} validation rows"
         + (f", {split['test']:,} test rows" if split["test"] else "")
         + f"; labels: {', '.join(data.label_names)}")

    run = RunDir.create(config.run.dir, config.run.name or default_run_name(config))
    run.write_text("config.yaml", render_config(config))
    run.write_json("data.json", data.manifest)
    echo(f"ftune: run directory {run.path}")

    trainer, task, state = _build_trainer(config, method, data, run, echo)
    started = time.monotonic()
    interrupted = _train_until_done_or_interrupted(trainer, echo)
    train_seconds = time.monotonic() - started
    state["keep_best"].restore_best()
    _remove_if_empty(Path(trainer.args.output_dir))

    metrics = _evaluate_all(config, trainer.model, task.tokenizer, data, echo)
    metrics["training"] = {
        "method": config.method.name, "model": config.model.name,
        "trainable_parameters": state["trainable"], "total_parameters": state["total"],
        "trainable_share": state["trainable"] / state["total"],
        "optimizer_steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0, 4),
        "seconds": round(train_seconds, 1),
        "examples_per_second": round(trainer.state.global_step * config.train.batch_size
                                     * config.train.gradient_accumulation_steps / max(train_seconds, 1e-9), 2),
        "stopped_by_time_budget": state["stop"].stopped_by_time,
        "interrupted": interrupted,
        "best_step": state["keep_best"].best_step,
        "device": state["plan"].device, "precision": state["plan"].precision,
    }
    run.write_json("metrics.json", metrics)
    _save_model(config, method, trainer.model, task, data.label_names, run)

    from ftune.train.model_card import write_model_card

    write_model_card(run, config, data.manifest, metrics)
    return ClassificationRun(run.path, metrics)


def _train_until_done_or_interrupted(trainer, echo) -> bool:
    """Train; a first Ctrl-C ends training early but still evaluates and saves the model."""
    try:
        trainer.train()
        return False
    except KeyboardInterrupt:
        echo("\nftune: interrupted: evaluating and saving the model as it is (Ctrl-C again to abort)")
        return True


def _remove_if_empty(directory: Path) -> None:
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def default_run_name(config: Config) -> str:
    return f"{Path(config.model.name).name}-{config.method.name}"


def _build_trainer(config: Config, method, data, run, echo):
    import torch
    from transformers import DataCollatorWithPadding, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ftune.models.load import load_classifier
    from ftune.train.callbacks import KeepBest, ProgressBar, StepLog, StopAndEvaluate
    from ftune.train.device import count_parameters, plan_device
    from ftune.train.schedule import ProgressSchedule
    from ftune.train.trainer import ScheduledTrainer

    t = config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    plan = plan_device(t.device, t.precision)
    set_seed(t.seed)
    task = load_classifier(config.model.name, data.label_names, config.model.trust_remote_code)
    problems = method.check(task)
    if problems:
        raise FtuneError("\n".join(problems))
    model = method.apply(task.model, task)
    trainable, total = count_parameters(model)
    echo(f"ftune: {config.model.name} + {config.method.name}: {trainable:,} of {total:,} parameters train "
         f"({trainable / total:.2%}); device {plan.device}, {plan.precision}")

    train_set = TokenizedExamples(task.tokenizer, data.train, config.model.max_length)
    validation_set = TokenizedExamples(task.tokenizer, data.validation, config.model.max_length)
    steps_per_epoch = math.ceil(len(train_set) / (t.batch_size * t.gradient_accumulation_steps))
    total_steps = t.max_steps or max(1, math.ceil(steps_per_epoch * t.epochs))
    eval_every = max(1, math.ceil(steps_per_epoch / t.evals_per_epoch))
    schedule = ProgressSchedule(total_steps, t.warmup_ratio, t.scheduler,
                                t.max_minutes * 60 if t.max_minutes else None)
    args = TrainingArguments(
        output_dir=str(run.path / "trainer"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate or method.default_learning_rate,
        weight_decay=t.weight_decay,
        num_train_epochs=t.epochs,
        max_steps=total_steps,
        eval_strategy="steps", eval_steps=eval_every,
        save_strategy="no",  # the best weights are kept in memory by KeepBest
        logging_steps=max(1, min(50, total_steps // 100)),
        report_to="none",
        seed=t.seed, data_seed=t.seed,
        use_cpu=plan.device == "cpu",
        bf16=plan.precision == "bf16", fp16=plan.precision == "fp16",
        activation_checkpointing=t.gradient_checkpointing,
        train_sampling_strategy="group_by_length",  # similar lengths per batch: little padding
        dataloader_num_workers=0,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    stop, keep_best = StopAndEvaluate(schedule), KeepBest(t.metric, t.early_stopping_patience)
    trainer = ScheduledTrainer(
        schedule=schedule, model=model, args=args, train_dataset=train_set, eval_dataset=validation_set,
        data_collator=DataCollatorWithPadding(task.tokenizer), compute_metrics=_training_metrics,
        callbacks=[stop, keep_best, ProgressBar(schedule), StepLog(run, schedule)],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    state = {"trainable": trainable, "total": total, "plan": plan, "stop": stop, "keep_best": keep_best}
    return trainer, task, state


def _training_metrics(prediction) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = prediction.predictions.argmax(-1)
    return {"accuracy": float(accuracy_score(prediction.label_ids, predicted)),
            "f1": float(f1_score(prediction.label_ids, predicted, average="macro"))}


class TokenizedExamples:
    """A map-style dataset of tokenized texts with their label ids."""

    def __init__(self, tokenizer, split, max_length: int):
        encoded = tokenizer(split.texts, truncation=True, max_length=max_length)
        self.items = [
            {"input_ids": ids, "attention_mask": mask, "labels": label}
            for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], split.label_ids)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def _evaluate_all(config: Config, model, tokenizer, data, echo) -> dict[str, Any]:
    from ftune.eval.baselines import majority_baseline, tfidf_baseline
    from ftune.eval.classifier import evaluate_texts

    length = config.model.max_length
    splits = {"validation": data.validation, **({"test": data.test} if data.test else {})}
    metrics: dict[str, Any] = {}
    for name, split in splits.items():
        result = {"model": evaluate_texts(model, tokenizer, split.texts, split.label_ids, data.label_names,
                                          length, config.train.eval_batch_size)}
        if config.eval.baselines:
            result["majority"] = majority_baseline(data.train.label_ids, split.label_ids, data.label_names)
            key = f"tfidf_{config.eval.baseline_model}"
            result[key] = tfidf_baseline(data.train.texts, data.train.label_ids, split.texts, split.label_ids,
                                         data.label_names, config.eval.baseline_model, config.train.seed)
        metrics[name] = result
    return metrics


def _save_model(config: Config, method, model, task, label_names, run) -> None:
    from ftune.models.registry import BUILTIN_MODELS

    staging = run.staging_model_dir()
    method.save(model, staging)
    task.tokenizer.save_pretrained(staging)
    base = config.model.name if config.model.name in BUILTIN_MODELS else str(Path(config.model.name).resolve())
    run.publish_model(staging, {
        "task": "classification", "base_model": base, "method": config.method.name,
        "method_options": config.method.options, "labels": label_names,
        "max_length": config.model.max_length, "format": "safetensors",
        "config": config_to_dict(config),
    })
