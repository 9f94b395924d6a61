"""A run's config and ``metrics.json`` as flat names every tracker can record.

Config: ``train.learning_rate``, ``method.r``, ... (a technique's options sit beside
``method.name``, as the user writes them). Metrics, per held-out split: the fine-tuned model's
scores as ``validation.accuracy``, each baseline's as ``validation.baseline.tfidf_logreg.accuracy``
(the base model before training is the baseline ``before``), labeled data trained as chat under
``validation.labels.*``; then ``training.*`` and ``verdict.*``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

from ftune.tracking.base import FinalFigures

# The entry of a split that holds the fine-tuned model's scores: classification, SFT and DPO,
# labeled data trained as chat.
TUNED_ENTRIES = ("model", "after", "fine_tuned")
# Per-example data and tables: in metrics.json (logged as a file), not as single numbers.
NOT_FIGURES = ("confusion_matrix",)
SUMMARY_SECTIONS = ("training", "verdict")


def config_params(config) -> dict[str, str]:
    """Every setting of the resolved config as ``section.key`` -> text (YAML-like: true, null)."""
    params: dict[str, str] = {}
    for section in dataclasses.fields(config):
        values = dataclasses.asdict(getattr(config, section.name))
        if section.name == "method":
            values = {"name": values["name"], **values["options"]}
        for key, value in values.items():
            params[f"{section.name}.{key}"] = value if isinstance(value, str) else json.dumps(value, default=str)
    return params


def final_figures(metrics: dict[str, Any]) -> FinalFigures:
    """The numbers and texts of a finished run's metrics, named as the module docstring says."""
    figures = FinalFigures(step=int((metrics.get("training") or {}).get("optimizer_steps") or 0))
    for split, entries in metrics.items():
        if split in SUMMARY_SECTIONS:
            _leaves(entries, split, figures)
        elif isinstance(entries, dict):
            _split_entries(entries, split, figures)
    return figures


def metric_name(key: str) -> str:
    """A name every tracker accepts (MLflow allows letters, digits and ``_-. :/``)."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", key)


def _split_entries(entries: dict[str, Any], prefix: str, figures: FinalFigures) -> None:
    for name, scores in entries.items():
        if not isinstance(scores, dict):
            continue
        if name == "labels" and scores and all(isinstance(v, dict) for v in scores.values()):
            _split_entries(scores, f"{prefix}.labels", figures)  # labeled data as chat: its own entries
        elif name in TUNED_ENTRIES:
            _leaves(scores, prefix, figures)
        else:
            _leaves(scores, f"{prefix}.baseline.{name}", figures)


def _leaves(values: Any, prefix: str, figures: FinalFigures) -> None:
    if not isinstance(values, dict):
        return
    for key, value in values.items():
        name = metric_name(f"{prefix}.{key}")
        if key in NOT_FIGURES or value is None:
            continue
        if isinstance(value, dict):
            _leaves(value, f"{prefix}.{key}", figures)
        elif isinstance(value, bool):
            figures.texts[name] = str(value).lower()
        elif isinstance(value, (int, float)):
            if math.isfinite(value):
                figures.scalars[name] = float(value)
        elif isinstance(value, str):
            figures.texts[name] = value
        elif (key.endswith("_ci") and isinstance(value, list) and len(value) == 2
              and all(isinstance(v, (int, float)) for v in value)):
            figures.scalars[f"{name}_low"], figures.scalars[f"{name}_high"] = map(float, value)
