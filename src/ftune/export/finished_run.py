"""A finished run as export sees it: what it is (read from files, nothing loaded), and, on
demand, its model, tokenizer and held-out split."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ftune.errors import FtuneError
from ftune.runs.run_dir import MODEL_DIR, MODEL_INFO, read_status


@dataclass
class FinishedRun:
    path: Path
    info: dict[str, Any]  # model/ftune-model.json
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path) -> "FinishedRun":
        """The run at ``path``; a clear error when it is not a finished ftune run."""
        path = Path(path)
        info_path = path / MODEL_DIR / MODEL_INFO
        if not path.is_dir():
            raise FtuneError(f"{path}: no such run directory")
        if not info_path.is_file():
            status = read_status(path) or {}
            state = f" (status: {status['state']})" if status.get("state") else ""
            raise FtuneError(f"{path}: not a finished ftune run{state}: it has no {MODEL_DIR}/{MODEL_INFO}; "
                             "export needs a run that saved its model")
        metrics_path = path / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        return cls(path, json.loads(info_path.read_text()), metrics)

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def task(self) -> str:
        """classification | causal_lm"""
        return self.info["task"]

    @property
    def objective(self) -> str:
        if self.task == "classification":
            return "classification"
        return self.info.get("objective", "sft")

    @property
    def method_name(self) -> str:
        return self.info["method"]

    @property
    def base_model(self) -> str:
        return self.info["base_model"]

    @cached_property
    def method(self):
        from ftune.methods import build_method

        return build_method(self.info["method"], self.info.get("method_options"))

    @cached_property
    def config(self):
        from ftune.settings import config_from_dict

        from ftune.runs.run_dir import use_recorded_data_paths

        config = config_from_dict(self.info["config"])
        use_recorded_data_paths(config, self.path)
        return config

    def load_base(self, **options):
        """The base model the run started from (``options``: e.g. QLoRA's 4-bit loading)."""
        from ftune.models.load import load_causal_lm, load_classifier

        if self.task == "classification":
            return load_classifier(self.base_model, self.info["labels"], **options).model
        return load_causal_lm(self.base_model, **options).model

    def load_model(self):
        """The trained model as the run saved it (adapter on its base, or the whole model), in eval mode."""
        model = self.method.load_saved(self.model_dir, self.load_base, task=self.task)
        model.eval()
        return model

    def tokenizer(self):
        from ftune.models.load import load_tokenizer

        return load_tokenizer(self.model_dir)

    @property
    def max_length(self) -> int:
        return self.info["max_length"]
