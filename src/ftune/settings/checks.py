"""Checks across settings: ranges, impossible combinations, things that must exist.

Runs after types are known and before any model or data loads, so every message can name the
key (and where it was set) in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ftune.config.schema import BASELINE_KINDS, Config

if TYPE_CHECKING:
    from ftune.settings.setting import Setting


def check_config(config: Config, settings: dict[str, "Setting"]) -> list[str]:
    """Every problem with a typed config, each naming its key."""
    problems: list[str] = []

    def where(key: str) -> str:
        return f"{settings[key].origin}: " if key in settings else ""

    def require(ok: bool, key: str, message: str) -> None:
        if not ok:
            value = _get(config, key)
            problems.append(f"{where(key)}{key} = {value!r}: {message}")

    t, d, m = config.train, config.data, config.model
    require(t.epochs is None or t.epochs > 0, "train.epochs", "must be above 0 (or empty for the default)")
    require(t.batch_size >= 1, "train.batch_size", "must be at least 1")
    require(t.eval_batch_size >= 1, "train.eval_batch_size", "must be at least 1")
    require(t.learning_rate is None or t.learning_rate > 0, "train.learning_rate", "must be above 0")
    require(t.weight_decay >= 0, "train.weight_decay", "must be 0 or more")
    require(0 <= t.warmup_ratio < 1, "train.warmup_ratio", "must be between 0 and 1")
    require(t.gradient_accumulation_steps >= 1, "train.gradient_accumulation_steps", "must be at least 1")
    require(t.evals_per_epoch >= 1, "train.evals_per_epoch", "must be at least 1")
    require(t.max_steps is None or t.max_steps >= 1, "train.max_steps", "must be at least 1")
    require(t.max_minutes is None or t.max_minutes > 0, "train.max_minutes", "must be above 0")
    require(t.early_stopping_patience is None or t.early_stopping_patience >= 1,
            "train.early_stopping_patience", "must be at least 1 (or empty to turn it off)")
    require(t.min_steps >= 0, "train.min_steps", "must be 0 (off) or more")
    require(t.threads is None or t.threads >= 1, "train.threads", "must be at least 1")
    require(_checkpoint_interval_ok(t.checkpoint_every), "train.checkpoint_every",
            "must be a number of optimizer steps (200), of minutes (10m), or off")
    require(t.keep_checkpoints >= 1, "train.keep_checkpoints", "must be at least 1")
    require(t.processes >= 1, "train.processes", "must be at least 1")
    e = config.eval
    require(isinstance(e.baselines, bool) or set(e.baselines) <= set(BASELINE_KINDS), "eval.baselines",
            f"must be true, false or a list of: {', '.join(BASELINE_KINDS)}")
    require(e.baseline_rows >= 10, "eval.baseline_rows", "must be at least 10")
    require(t.memory_limit is None or _memory_size_ok(t.memory_limit), "train.memory_limit",
            "must be a memory size such as 16GB or 900MB")
    require(not (t.precision == "fp16" and t.device in ("cpu", "mps")), "train.precision",
            f"fp16 training needs a CUDA GPU; on {t.device} use fp32 or bf16")
    require(not (t.precision in ("bf16", "fp16") and t.device == "mps"), "train.precision",
            "mixed precision is not supported on mps here; use fp32")
    require(m.max_length is None or m.max_length >= 8, "model.max_length", "must be at least 8 tokens")
    g = config.generate
    require(g.max_new_tokens >= 1, "generate.max_new_tokens", "must be at least 1")
    require(g.temperature >= 0, "generate.temperature", "must be 0 (greedy) or more")
    require(0 < g.top_p <= 1, "generate.top_p", "must be above 0 and at most 1")
    require(g.samples >= 0, "generate.samples", "must be 0 or more")
    require(config.objective.beta > 0, "objective.beta", "must be above 0")
    require(0 < d.validation_fraction < 1, "data.validation_fraction", "must be between 0 and 1")
    require(0 <= d.max_bad_fraction <= 1, "data.max_bad_fraction", "must be between 0 and 1")
    require(d.max_rows is None or d.max_rows >= 2, "data.max_rows", "must be at least 2")
    if d.text_columns is not None and d.label_column is not None:
        require(d.label_column not in d.text_columns, "data.label_column",
                f"is also one of data.text_columns {d.text_columns}")
    for key in ("data.text_columns",):
        value = _get(config, key) or []
        require(all(not isinstance(c, int) or c >= 0 for c in value), key, "positions start at 0")
    require(not isinstance(d.label_column, int) or d.label_column >= 0, "data.label_column", "positions start at 0")
    require(not d.labels or len(set(d.labels)) >= 2, "data.labels", "needs at least two distinct labels")
    for key in ("data.train", "data.validation", "data.test"):
        path = _get(config, key)
        if path is not None and Path(path).is_dir():
            require(False, key, "is a directory; give a data file (csv, tsv, json, jsonl)")
        else:
            require(path is None or Path(path).is_file(), key, "file not found")
    problems.extend(_check_choices(config, where))
    problems.extend(_check_trackers(config, where))
    problems.extend(_check_model(config, where))
    problems.extend(_check_method(config, where))
    return problems


def _check_choices(config: Config, where) -> list[str]:
    """data.format and data.template name registered formats / templates."""
    import difflib

    from ftune.data.formats import format_names
    from ftune.data.templates import template_names

    problems = []
    for key, value, allowed in (("data.format", config.data.format, ["auto", "classification", *format_names()]),
                                ("data.template", config.data.template, list(dict.fromkeys(["auto", *template_names()])))):
        if value not in allowed:
            match = difflib.get_close_matches(value, allowed, n=1)
            hint = f' Did you mean "{match[0]}"?' if match else ""
            problems.append(f"{where(key)}{key} = {value!r}: choose one of {', '.join(allowed)}.{hint}")
    return problems


def _check_trackers(config: Config, where) -> list[str]:
    """train.report_to names registered trackers whose packages are installed."""
    import difflib

    from ftune.tracking import missing_package, tracker_names

    key, chosen = "train.report_to", config.train.report_to
    allowed = tracker_names()
    problems = []
    for name in dict.fromkeys(chosen):
        if name == "none":
            continue
        if name not in allowed:
            match = difflib.get_close_matches(name, allowed, n=1)
            hint = f' Did you mean "{match[0]}"?' if match else ""
            problems.append(f"{where(key)}{key} = {chosen!r}: unknown tracker {name!r}; choose from "
                            f"{', '.join(allowed)} (or none).{hint}")
        elif missing_package(name):
            problems.append(f"{where(key)}{key} = {chosen!r}: {missing_package(name)}")
    if config.train.register_model and "mlflow" not in chosen:
        problems.append(f"{where('train.register_model')}train.register_model = {config.train.register_model!r}: "
                        "registers in MLflow; add mlflow to train.report_to")
    return problems


def _check_model(config: Config, where) -> list[str]:
    from ftune.models.registry import model_problem

    problem = model_problem(config.model.name)
    if problem:
        return [f"{where('model.name')}model.name = {config.model.name!r}: {problem}"]
    from ftune.models.registry import position_limit

    limit = position_limit(config.model.name)
    if config.model.max_length is not None and limit is not None and config.model.max_length > limit:
        return [f"{where('model.max_length')}model.max_length = {config.model.max_length}: {config.model.name} reads "
                f"at most {limit:,} positions; use {limit} or less"]
    return []


def _check_method(config: Config, where) -> list[str]:
    from ftune.methods.base import get_method_class

    method = get_method_class(config.method.name)
    from ftune.models.registry import model_problem

    model_checks = [] if model_problem(config.model.name) else method.check_model_files(config.model.name)
    return [f"{where('method.name')}{p}" for p in method_capability_problems(method, config)
            + method.check_options(config.method.options) + model_checks]


def method_capability_problems(method, config: Config) -> list[str]:
    """What the technique cannot do that this config asks of it (before any model loads)."""
    import importlib.util

    name, objective, caps = config.method.name, config.objective.name, method.capabilities
    problems = []
    if objective == "classification" and not caps.classification:
        problems.append(f"method.name = {name!r}: this technique cannot train a classification head")
    if objective in ("sft", "dpo") and not caps.generation:
        problems.append(f"method.name = {name!r}: this technique does not work with text generation ({objective})")
    if caps.quantized_base:
        if importlib.util.find_spec("bitsandbytes") is None:
            problems.append(f"method.name = {name!r}: needs bitsandbytes for the 4-bit base "
                            "(pip install bitsandbytes)")
        if config.train.precision == "fp16" and config.train.device != "cuda":
            problems.append(f"method.name = {name!r}: a 4-bit base with fp16 needs a CUDA GPU; use train.precision=auto")
    if config.run.merge and method.saves_adapter and not caps.mergeable:
        problems.append(f"run.merge = true: {name!r} adapters cannot be merged into the base weights; "
                        "ship the adapter (run.merge=false)")
    return problems


def _get(config: Config, dotted: str):
    section, name = dotted.split(".", 1)
    return getattr(getattr(config, section), name)


def _memory_size_ok(text: str) -> bool:
    from ftune.config.units import parse_memory_size

    try:
        return parse_memory_size(text) > 0
    except ValueError:
        return False


def _checkpoint_interval_ok(value) -> bool:
    from ftune.config.units import CheckpointInterval

    try:
        CheckpointInterval.parse(value)
    except ValueError:
        return False
    return True
