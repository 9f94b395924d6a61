"""Which objective a config trains: set explicitly, or read from the data."""

from __future__ import annotations

from ftune.config import Config
from ftune.errors import ConfigError


def resolve_objective(config: Config) -> str:
    """classification | sft | dpo. ``objective=auto`` decides from ``data.format`` or the file."""
    from ftune.data.formats import get_format

    name = config.objective.name
    fmt = data_format(config)
    data_objective = ("classification" if fmt == "classification"
                      else "dpo" if get_format(fmt).kind == "preference" else "sft")
    objective = data_objective if name == "auto" else name
    # SFT also takes preference pairs (their chosen replies) and labeled rows (phrased as chat).
    if objective != data_objective and not (objective == "sft" and data_objective in ("dpo", "classification")):
        raise ConfigError([f"objective.name = {name!r}: the data ({fmt}) calls for objective={data_objective}"])
    if objective != "classification" and config.data.test:
        raise ConfigError([f"data.test = {config.data.test!r}: {objective.upper()} runs are measured on the "
                           "validation split (data.validation, or a share of data.train); score a test file "
                           "after training with `ftune eval RUN_DIR --data FILE`"])
    if objective != "classification" and _model_kind(config.model.name) == "encoder":
        raise ConfigError([f"model.name = {config.model.name!r}: is an encoder; {objective} on {fmt} data needs "
                           "a decoder LLM such as smollm2-135m"])
    return objective


LEARNING_RATE_KEYS = {"classification": "classification", "sft": "causal_lm", "dpo": "preference"}


def settle_defaults(config: Config, objective: str) -> Config:
    """Fill what the user left to the objective: ``model.max_length`` (128 tokens for
    classification, 1,024 for SFT and DPO, at most the model's positions) and
    ``train.learning_rate`` (the technique's default
    for the objective). Done once, before the run starts, so the run's config.yaml records
    the values used. Idempotent."""
    from ftune.config.schema import DEFAULT_MAX_LENGTH
    from ftune.methods import get_method_class

    if config.model.max_length is None:
        from ftune.models.registry import position_limit

        limit = position_limit(config.model.name)  # a small model's positions cap the default
        config.model.max_length = min(DEFAULT_MAX_LENGTH[objective], limit or DEFAULT_MAX_LENGTH[objective])
    if config.train.learning_rate is None:
        rates = get_method_class(config.method.name).default_learning_rates
        config.train.learning_rate = rates[LEARNING_RATE_KEYS[objective]]
    return config


def _model_kind(name: str) -> str:
    from pathlib import Path

    from ftune.models.registry import BUILTIN_MODELS

    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name].kind
    from ftune.models.load import model_kind  # reads config.json only

    return model_kind(Path(name))


def data_format(config: Config) -> str:
    """``data.format``, or the format detected from the training file ("classification" for
    labeled rows and for the built-in demo)."""
    fmt = config.data.format
    if fmt == "auto":
        fmt = _detect(config.data.train) if config.data.train else "classification"
    return fmt


def _detect(path: str) -> str:
    """A generative format name if the file's keys match one, else "classification"."""
    from ftune.data.generative import detect_file_format

    return detect_file_format(path) or "classification"
