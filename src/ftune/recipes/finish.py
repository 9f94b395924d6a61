"""How every objective ends a run: scores, model, model card and status, in that order."""

from __future__ import annotations

from typing import Any

from ftune.config import Config
from ftune.training.loop import TrainedRun


def finish_training(run, config: Config, objective: str, manifest: dict[str, Any], metrics: dict[str, Any], *,
                    method, model, tokenizer, extra: dict[str, Any]) -> TrainedRun:
    """Write ``metrics.json`` first (a failed save never loses the finished scores), then the
    model, its card, and the status that marks the run finished."""
    from ftune.recipes.model_card import write_model_card
    from ftune.training.loop import finish_run
    from ftune.training.ship import save_run_model

    run.write_json("metrics.json", metrics)
    save_run_model(config, method, model, tokenizer, run,
                   task="classification" if objective == "classification" else "causal_lm", extra=extra)
    write_model_card(run, config, objective, manifest, metrics)
    finish_run(run, metrics["training"])
    return TrainedRun(run.path, metrics, objective)
