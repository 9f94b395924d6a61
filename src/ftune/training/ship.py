"""Save what a run ships (safetensors adapter or model, tokenizer, ftune-model.json), atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftune.config import Config
from ftune.settings import config_to_dict


def base_model_reference(name: str) -> str:
    """A built-in name stays a name; a local directory becomes an absolute path."""
    from ftune.models.registry import BUILTIN_MODELS

    return name if name in BUILTIN_MODELS else str(Path(name).resolve())


def save_run_model(config: Config, method, model, tokenizer, run, *, task: str,
                   extra: dict[str, Any] | None = None) -> Path:
    staging = run.staging_model_dir()
    method_name, method_options = config.method.name, config.method.options
    if config.run.merge and method.saves_adapter:
        # One standalone model: the adapter folded into the base weights, loaded like `full`.
        from ftune.methods import build_method

        model = method.merge(model)
        method, method_name, method_options = build_method("full"), "full", {}
        extra = {**(extra or {}), "merged_from": config.method.name}
    method.save(model, staging)
    tokenizer.save_pretrained(staging)
    info = {
        "task": task, "base_model": base_model_reference(config.model.name), "method": method_name,
        "method_options": method_options, "max_length": config.model.max_length,
        "format": "safetensors", **(extra or {}), "config": config_to_dict(config),
    }
    return run.publish_model(staging, info)
