"""Resumable checkpoints: transformers' own (weights, optimizer, scheduler, grad scaler, RNG
states, trainer state with the data position) plus ftune's part (best weights and early
stopping, the time budget spent, the log so far), written atomically.

Layout, in the run directory::

    checkpoints/checkpoint-40/   complete checkpoints (the last ``train.keep_checkpoints``)
    checkpoints/.partial/        a checkpoint being written; never read, removed on resume

A checkpoint is written into ``.partial``, synced to disk, then renamed into place, so a
process killed while writing leaves the previous checkpoint as the latest complete one.

Over several processes every one takes part in transformers' save (the main one writes the
weights, optimizer and trainer state; each its own ``rng_state_<rank>.pth``), while the main
process alone creates, completes and renames the staging directory, with barriers around the
writes so no process writes into a directory being cleared or moved.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ftune.errors import FtuneError
from ftune.training.distributed import current_world

CHECKPOINTS = "checkpoints"
STAGING = ".partial"
FTUNE_STATE = "ftune-state.json"  # written last: a checkpoint without it is incomplete
LOG_COPY = "log.jsonl"
_NAME = re.compile(r"checkpoint-(\d+)")


def checkpoint_root(run_path: Path) -> Path:
    return Path(run_path) / CHECKPOINTS


def complete_checkpoints(run_path: Path) -> list[Path]:
    """Complete checkpoints, oldest first (by step)."""
    root = checkpoint_root(run_path)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _NAME.fullmatch(p.name)) and (p / FTUNE_STATE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_path: Path) -> Path | None:
    found = complete_checkpoints(run_path)
    return found[-1] if found else None


def checkpoint_step(checkpoint: Path) -> int:
    return int(_NAME.fullmatch(checkpoint.name).group(1))


def write_atomically(trainer, save, run_path: Path, keep: int) -> Path:
    """Run transformers' ``save()`` into the staging directory, add ftune's part, sync, rename
    into place, and keep the last ``keep`` checkpoints."""
    from ftune.runs.run_dir import RunDir, directory_size, read_status

    root = checkpoint_root(run_path)
    staging = root / STAGING
    started = time.monotonic()
    try:
        written = _write(trainer, save, run_path, root, staging, keep)
        if not trainer.is_world_process_zero():
            return written
        status = read_status(run_path) or {}
        RunDir(run_path).update_status(  # what checkpoints cost, for the user and bench/checkpoint_overhead.py
            checkpoints_written=status.get("checkpoints_written", 0) + 1,
            checkpoint_seconds=round(status.get("checkpoint_seconds", 0.0) + time.monotonic() - started, 3),
            last_checkpoint={"step": trainer.state.global_step, "mb": round(directory_size(written) / 2**20, 1)})
        return written
    except OSError as error:  # a full disk, a directory made read-only: the last complete one stays
        shutil.rmtree(staging, ignore_errors=True)
        last = latest_checkpoint(run_path)
        kept = (f"the last complete checkpoint, {last.name}, is kept: ftune train --resume {run_path}"
                if last else "no earlier checkpoint exists")
        raise FtuneError(f"could not write the checkpoint of step {trainer.state.global_step} under {root}: "
                         f"{error.strerror or error}; {kept}") from None


def _write(trainer, save, run_path: Path, root: Path, staging: Path, keep: int) -> Path:
    from ftune.training import faults

    main = trainer.is_world_process_zero()
    if main:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
    trainer.accelerator.wait_for_everyone()  # the staging directory is there, empty, before anyone writes
    save(str(staging))  # transformers writes <staging>/checkpoint-<step>/ (every process its RNG state)
    trainer.accelerator.wait_for_everyone()  # every process's files are in before the main one moves them
    written = staging / f"checkpoint-{trainer.state.global_step}"
    faults.maybe_kill("checkpoint-write", trainer.state.global_step)
    if not main:  # the next checkpoint's first barrier comes after the main process's rename
        return root / written.name
    state: dict[str, Any] = {"step": trainer.state.global_step, "processes": trainer.args.world_size,
                             "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
    for callback in trainer.callback_handler.callbacks:
        if hasattr(callback, "save_checkpoint_state"):
            state[type(callback).__name__] = callback.save_checkpoint_state(written)
    log = Path(run_path) / LOG_COPY
    if log.is_file():
        shutil.copyfile(log, written / LOG_COPY)
    (written / FTUNE_STATE).write_text(json.dumps(state, indent=2) + "\n")
    _sync_tree(written)
    final = root / written.name
    if final.exists():  # the same step saved again (a resumed run): the new one replaces it
        shutil.rmtree(final)
    os.replace(written, final)
    _sync_directory(root)
    shutil.rmtree(staging, ignore_errors=True)
    for old in complete_checkpoints(run_path)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def restore_ftune_state(trainer, checkpoint: Path, run_path: Path) -> dict[str, Any]:
    """Give each callback its saved state back (in every process: they decide alike) and put
    the log back as it was at the checkpoint (the main process, which writes it)."""
    state = json.loads((checkpoint / FTUNE_STATE).read_text())
    for callback in trainer.callback_handler.callbacks:
        name = type(callback).__name__
        if hasattr(callback, "restore_checkpoint_state") and name in state:
            callback.restore_checkpoint_state(state[name], checkpoint)
    if trainer.is_world_process_zero() and (checkpoint / LOG_COPY).is_file():
        shutil.copyfile(checkpoint / LOG_COPY, Path(run_path) / LOG_COPY)
    return state


def remove_checkpoints(run_path: Path) -> None:
    """A finished run's checkpoints are not needed: its model is saved."""
    shutil.rmtree(checkpoint_root(run_path), ignore_errors=True)


def resume_run(run_path: str | Path):
    """(config, RunDir) to continue the interrupted run at ``run_path`` from its last complete
    checkpoint: its own recorded config, reading the data files it recorded."""
    from ftune.runs.run_dir import RunDir, use_recorded_data_paths
    from ftune.settings import load_config

    run_path = Path(run_path)
    checkpoint = resumable_checkpoint(run_path)
    config = load_config(str(run_path / "config.yaml"), [])
    use_recorded_data_paths(config, run_path)
    # as many processes as wrote the checkpoint (torchrun may have started more than the config says):
    # the data order and each process's RNG state depend on it
    config.train.processes = checkpoint_processes(checkpoint)
    world = current_world()
    if world.distributed and world.size != config.train.processes:
        raise FtuneError(f"--resume {run_path}: {checkpoint.name} was written by {config.train.processes} "
                         f"process(es); this launch has {world.size}. Resume it over as many "
                         f"(ftune train --resume {run_path} starts them).")
    return config, RunDir.resuming(run_path, checkpoint)


def checkpoint_processes(checkpoint: Path) -> int:
    """How many processes trained up to ``checkpoint`` (1 for checkpoints that do not say)."""
    return int(json.loads((Path(checkpoint) / FTUNE_STATE).read_text()).get("processes", 1))


def resumable_checkpoint(run_path: Path) -> Path:
    """The checkpoint ``ftune train --resume`` continues from, or an error that says why none can be."""
    from ftune.runs.run_dir import read_status
    from ftune.runs.unfinished import process_alive

    run_path = Path(run_path)
    if not (run_path / "config.yaml").is_file():
        raise FtuneError(f"--resume {run_path}: not a run directory (no config.yaml)")
    status = read_status(run_path) or {}
    if status.get("state") == "finished":
        raise FtuneError(f"--resume {run_path}: the run already finished; its model is in {run_path / 'model'}")
    # Several resuming processes: the main one checks and clears (it may already have marked the run
    # as its own, started, when another gets here)
    if current_world().main:
        if status.get("state") == "started" and status.get("pid") != os.getpid() and process_alive(status.get("pid")):
            raise FtuneError(f"--resume {run_path}: the run is still training (process {status['pid']})")
        shutil.rmtree(checkpoint_root(run_path) / STAGING, ignore_errors=True)  # a write the crash cut short
    found = latest_checkpoint(run_path)
    if found is None:
        raise FtuneError(f"--resume {run_path}: the run has no complete checkpoint to resume from (it saves one "
                         "every train.checkpoint_every; the default is 5m). Start it again with ftune train.")
    return found


def _sync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def resumable_runs_under(parent: Path) -> list[Path]:
    """Unfinished run directories directly under ``parent`` that hold a complete checkpoint."""
    from ftune.runs.run_dir import read_status

    found = []
    for config in sorted(Path(parent).glob("*/config.yaml")):
        run = config.parent
        if (read_status(run) or {}).get("state") != "finished" and latest_checkpoint(run) is not None:
            found.append(run)
    return found
