"""How every objective ends a run: scores, model, model card, status and the experiment
trackers' record, in that order."""

from __future__ import annotations

from typing import Any

from ftune.config import Config
from ftune.training.loop import TrainedRun


def finish_training(run, config: Config, objective: str, manifest: dict[str, Any], metrics: dict[str, Any], *,
                    method, model, tokenizer, extra: dict[str, Any], verdict=None, tracking=None) -> TrainedRun:
    """Write ``metrics.json`` first (a failed save never loses the finished scores), then the
    model, the verdict (``verdict(cost)``: it names the size of what ships), the model card,
    and the status that marks the run finished; then the experiment trackers
    (``train.report_to``) record the finished run: ``tracking`` is the session's
    (``TrainingSession.tracking``), by default the one this process opened for ``run``."""
    from ftune.eval.baselines import strip_predictions
    from ftune.recipes.model_card import write_model_card
    from ftune.runs.run_dir import directory_size
    from ftune.tracking import tracking_for_run
    from ftune.training.loop import finish_run
    from ftune.training.ship import save_run_model

    run.write_json("metrics.json", strip_predictions(metrics))
    save_run_model(config, method, model, tokenizer, run,
                   task="classification" if objective == "classification" else "causal_lm", extra=extra)
    if verdict is not None:
        training = metrics["training"]
        found = verdict({"training_minutes": (training["seconds"] - training.get("evaluation_seconds", 0)) / 60,
                         "trainable_parameters": training["trainable_parameters"],
                         "ships_mb": directory_size(run.model_dir) / 2**20})
        if found:
            metrics["verdict"] = found
    metrics = strip_predictions(metrics)
    run.write_json("metrics.json", metrics)
    write_model_card(run, config, objective, manifest, metrics)
    finish_run(run, metrics["training"])
    tracking = tracking or tracking_for_run(run.path)
    if tracking is not None:
        tracking.finish(run.path, metrics)
    return TrainedRun(run.path, metrics, objective)


def fail_tracking(tracking=None) -> None:
    """End the experiment trackers' record of a run that raised as failed: ``tracking`` (the
    session's), or every one this process opened and did not finish. Call it where a recipe
    catches the error; a process that exits on the error does it by itself."""
    from ftune.tracking import fail_open_tracking

    if tracking is not None:
        tracking.fail()
    else:
        fail_open_tracking()
