"""The recipe a config calls for: classification, SFT or DPO, chosen by ``objective.name`` or
by the data."""

from __future__ import annotations

from ftune.config import Config
from ftune.training.loop import TrainedRun


def train_for_objective(config: Config, echo=print, resume=None) -> TrainedRun:
    """Train with the objective the config and data call for; the run, with ``objective`` set.
    ``resume``: an interrupted run's RunDir (``resume_from`` its checkpoint) to continue."""
    from ftune.errors import FtuneError
    from ftune.training.device import plan_device
    from ftune.training.distributed import current_world, main_process_echo
    from ftune.training.launch import launch_problems, train_in_processes
    from ftune.training.objective import resolve_objective, settle_defaults

    objective = resolve_objective(config)
    settle_defaults(config, objective)
    world = current_world()
    if config.train.processes > 1 and not world.distributed:  # start the processes; the main one writes the run
        return train_in_processes(config, objective, echo, resume)
    if world.distributed:  # one of the processes (started by ftune, accelerate launch or torchrun)
        device = plan_device(config.train.device, config.train.precision).device
        problems = launch_problems(config, device, cpu_cores=world.size, gpus=world.size)
        if problems:
            raise FtuneError("\n".join(problems))
        echo = main_process_echo(echo)
    if objective == "classification":
        from ftune.recipes.classify import train_classifier as recipe
    elif objective == "sft":
        from ftune.recipes.sft import train_sft as recipe
    else:
        from ftune.recipes.dpo import train_dpo as recipe
    try:
        result = recipe(config, echo, resume)
    except BaseException:
        from ftune.recipes.finish import fail_tracking

        fail_tracking()  # the trackers' record of this run ends as failed, now, not at exit
        raise
    result.objective = objective
    return result
