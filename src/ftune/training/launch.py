"""``train.processes=N``: start the N processes of one run through ``accelerate launch`` (torchrun
underneath; gloo on CPU, NCCL on CUDA) and return the run the main process wrote.

Everything that would stop the launch is checked here first, before any process starts: the
device, the strategy, and that there are as many GPUs or CPU cores as processes.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from ftune.config import Config
from ftune.errors import FtuneError
from ftune.training.loop import RUN_PATH_VARIABLE, TrainedRun, default_run_name
from ftune.training.strategies import strategy_problems


def launch_problems(config: Config, device: str, cpu_cores: int, gpus: int) -> list[str]:
    """What makes ``train.processes`` impossible here, each naming the setting."""
    n = config.train.processes
    problems = []
    if device == "cuda" and n > gpus:
        problems.append(f"train.processes = {n}: more processes than the {gpus} GPU(s) this machine has")
    elif device == "cpu" and n > cpu_cores:
        problems.append(f"train.processes = {n}: more processes than the {cpu_cores} CPU core(s) this machine has "
                        "(each process needs at least one)")
    elif device == "mps":
        problems.append(f"train.processes = {n}: Apple's mps device trains in one process; use train.processes=1")
    return problems + strategy_problems(config.train.distributed, device, config.method.name)


def launch_command(config: Config, config_path: Path | None, device: str, port: int,
                   resume: Path | None = None) -> list[str]:
    """``accelerate launch`` for ``ftune train CONFIG`` over ``train.processes`` processes, or for
    ``ftune train --resume RUN`` with ``resume``."""
    t = config.train
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--multi_gpu",  # accelerate's DDP launcher (torchrun); on a CPU it runs gloo
               "--num_processes", str(t.processes), "--num_machines", "1",
               "--mixed_precision", "no",  # ftune's own train.precision decides, inside the Trainer
               "--dynamo_backend", "no", "--main_process_port", str(port)]
    if device == "cpu":
        cores = os.cpu_count() or t.processes
        command += ["--num_cpu_threads_per_process", str(t.threads or max(1, cores // t.processes))]
    return command + ["-m", "ftune", "train", *(["--resume", str(resume)] if resume else [str(config_path)])]


def train_in_processes(config: Config, objective: str, echo=print, resume=None) -> TrainedRun:
    """Run the training over ``train.processes`` processes; the main one writes the run
    directory reserved here, whose metrics come back as the result. ``resume``: an interrupted
    run's RunDir, continued over as many processes as it had, each ``ftune train --resume RUN``
    (each restores its own RNG state and share of the data from the checkpoint)."""
    from ftune.runs.run_dir import RunDir
    from ftune.settings.dump import render_config
    from ftune.training.device import plan_device

    device = plan_device(config.train.device, config.train.precision).device
    problems = launch_problems(config, device, os.cpu_count() or 1, _gpu_count(device))
    if problems and resume is not None:  # its checkpoint holds one RNG state and data share per process
        problems = [f"--resume {resume.path}: the run trained over {config.train.processes} processes and resumes "
                    f"over as many; {problem}" for problem in problems]
    if problems:
        raise FtuneError("\n".join(problems))
    suffix = "" if objective == "classification" else objective  # as one process names it: <model>-<technique>-dpo
    run = resume or RunDir.reserve(config.run.dir, config.run.name or "-".join(filter(None, [
        default_run_name(config), suffix])))
    with tempfile.TemporaryDirectory(prefix="ftune-launch-") as scratch:
        config_path = None
        if resume is None:
            config_path = Path(scratch) / "config.yaml"
            config_path.write_text(render_config(config))
        command = launch_command(config, config_path, device, _free_port(), resume.path if resume else None)
        echo(f"ftune: training over {config.train.processes} processes ({config.train.distributed}, "
             f"{'gloo' if device == 'cpu' else 'nccl'}): {shlex.join(command[2:])}")
        code, interrupted = _run(command, {**os.environ, RUN_PATH_VARIABLE: str(run.path)})
    metrics_path = run.path / "metrics.json"
    # After Ctrl-C the launcher exits non-zero even when the main process saved the run
    if not metrics_path.is_file() or (code != 0 and not interrupted):
        raise FtuneError(f"training over {config.train.processes} processes failed (exit code {code}); "
                         "the lines above name the process and its error")
    return TrainedRun(run.path, json.loads(metrics_path.read_text()), objective)


def _run(command: list[str], env: dict[str, str]) -> tuple[int, bool]:
    """The launcher in the foreground: its processes print, and take Ctrl-C, themselves.
    Returns (exit code, whether Ctrl-C came)."""
    child = subprocess.Popen(command, env=env)
    interrupted = False
    while True:
        try:
            return child.wait(), interrupted
        except KeyboardInterrupt:
            interrupted = True  # the processes got it too: they stop training, and the main one saves


def _gpu_count(device: str) -> int:
    if device != "cuda":
        return 0
    import torch

    return torch.cuda.device_count()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
