"""The recipe a config calls for: classification, SFT or DPO, chosen by ``objective.name`` or
by the data."""

from __future__ import annotations

from ftune.config import Config
from ftune.training.loop import TrainedRun


def train_for_objective(config: Config, echo=print, resume=None) -> TrainedRun:
    """Train with the objective the config and data call for; the run, with ``objective`` set.
    ``resume``: an interrupted run's RunDir (``resume_from`` its checkpoint) to continue."""
    from ftune.training.objective import resolve_objective, settle_defaults

    objective = resolve_objective(config)
    settle_defaults(config, objective)
    if objective == "classification":
        from ftune.recipes.classify import train_classifier as recipe
    elif objective == "sft":
        from ftune.recipes.sft import train_sft as recipe
    else:
        from ftune.recipes.dpo import train_dpo as recipe
    result = recipe(config, echo, resume)
    result.objective = objective
    return result
