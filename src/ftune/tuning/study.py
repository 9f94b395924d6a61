"""The search: an Optuna study whose trials are normal ftune runs, trained in this process one
after another, reported at each evaluation and pruned when weak.

    plan = plan_search(config, "space.yaml")            # checked before any model loads
    result = run_search(plan, directory, trials=12)     # run it again to continue where it stopped

The study lives in SQLite in the search directory (or any Optuna storage URL, which several
machines can share). A trial left running by a process that was killed is marked failed and
its parameters run once more; finished trials are never run again, and ``trials`` counts the
finished (complete or pruned) trials of the study across every resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftune.config import Config
from ftune.errors import ConfigError, FtuneError
from ftune.tuning.report import TRIALS_DIR, TuneResult, params_text, progress_line, trial_note, write_tune_results
from ftune.tuning.search_tracking import SearchTracking
from ftune.tuning.space import SearchSpace, build_space, default_params, space_summary, with_values

STUDY_FILE = "study.db"
PLAN_FILE = "tune.json"
DEFAULT_STUDY_NAME = "ftune"
MAX_FAILURES_IN_A_ROW = 3  # the same error again and again: stop, and say which
# Optuna's heartbeat: a trial on another machine whose heartbeat stopped this long ago is failed
# (and its parameters run again) by whichever process starts a trial next.
HEARTBEAT_SECONDS, GRACE_SECONDS = 60, 300


@dataclass
class TunePlan:
    """What a search runs: the shared config, the space, and where the study is stored."""

    config: Config
    space: SearchSpace
    objective: str  # classification | sft | dpo
    storage: str | None = None  # an Optuna storage URL; None: sqlite:///<directory>/study.db
    study_name: str = DEFAULT_STUDY_NAME

    @property
    def metric(self) -> str:
        """The validation metric the trials are ranked by: train.metric for a classifier, else the loss."""
        return self.config.train.metric if self.objective == "classification" else "loss"

    @property
    def maximize(self) -> bool:
        return self.objective == "classification"

    def storage_url(self, directory: Path) -> str:
        return self.storage or f"sqlite:///{(Path(directory) / STUDY_FILE).resolve()}"

    def settings(self) -> dict[str, Any]:
        """The config and the space as plain data: what makes two searches the same search."""
        from ftune.settings import config_to_dict

        return {"config": config_to_dict(self.config), "space": {k: d.as_dict() for k, d in self.space.items()}}

    def fingerprint(self) -> str:
        text = json.dumps(self.settings(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def to_json(self) -> str:
        return json.dumps({**self.settings(), "objective": self.objective, "storage": self.storage,
                           "study_name": self.study_name}, indent=2, default=str) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> "TunePlan":
        from ftune.settings import config_from_dict
        from ftune.tuning.space import Dimension

        data = json.loads(Path(path).read_text())
        return cls(config_from_dict(data["config"]), {k: Dimension.from_dict(k, d) for k, d in data["space"].items()},
                   data["objective"], data.get("storage"), data.get("study_name") or DEFAULT_STUDY_NAME)


def plan_search(config: Config, space_path: str | Path | None = None, storage: str | None = None,
                study_name: str | None = None) -> TunePlan:
    """The objective the data calls for and the search space (the technique's default, changed by
    ``space_path``), all checked now; raises ``ConfigError`` naming every problem."""
    from ftune.training.objective import resolve_objective

    objective = resolve_objective(config)
    space = build_space(config, objective, space_path)
    return TunePlan(config, space, objective, storage, study_name or DEFAULT_STUDY_NAME)


def default_directory(plan: TunePlan) -> Path:
    """``<run.dir>/tune-<model>-<technique>-<fingerprint>``: the same command finds the same
    directory (and resumes); another config or space gets another."""
    return Path(plan.config.run.dir) / f"tune-{Path(plan.config.model.name).name}-{plan.config.method.name}-{plan.fingerprint()}"


def run_search(plan: TunePlan, directory: str | Path, trials: int, timeout_minutes: float | None = None, *,
               pruner=None, command: str = "", echo=print) -> TuneResult:
    """Run trials until ``trials`` of the study have finished (complete or pruned), or no new
    trial may start after ``timeout_minutes``; then write best.yaml, trials.csv and report.html.
    ``pruner``: an Optuna pruner (default: median of the earlier trials at the same step)."""
    import optuna

    if trials < 1:
        raise ConfigError([f"--trials = {trials}: must be at least 1"])
    if timeout_minutes is not None and timeout_minutes <= 0:
        raise ConfigError([f"--timeout = {timeout_minutes:g}: must be above 0 minutes"])
    directory = Path(directory)
    _write_plan(plan, directory)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # ftune prints one line per trial itself
    try:
        return _search(plan, directory, trials, timeout_minutes, pruner, command, echo)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _search(plan: TunePlan, directory: Path, trials: int, timeout_minutes: float | None, pruner, command: str,
            echo) -> TuneResult:
    study, storage = open_study(plan, directory, trials, pruner, echo)
    recover_interrupted(study, storage, directory, echo)
    if not study.trials:
        params, outside = default_params(plan.space, plan.config, plan.objective)
        if outside:
            echo("ftune tune: the default config is not a point of the search space, so it is not measured: "
                 + "; ".join(outside))
        else:  # trial 0: "best against default" is measured, not guessed
            study.enqueue_trial(params, user_attrs={"default": True})
    finished = _count(study, "COMPLETE", "PRUNED")
    echo(f"ftune tune: {trials} trials of {plan.config.model.name} + {plan.config.method.name}, "
         f"{'maximizing' if plan.maximize else 'minimizing'} validation {plan.metric}"
         + (f"; {finished} finished earlier" if finished else "") + f"\n  directory {directory}\n  study "
         f"{plan.study_name!r} in {plan.storage_url(directory)}\n  searching {space_summary(plan.space)}")
    if plan.config.train.processes > 1:
        echo("ftune tune: train.processes > 1: each trial is measured, but none is pruned (the trial's "
             "callback runs in this process, not in the training processes)")
    objective = TrialObjective(plan, directory, trials, echo)
    tracking = SearchTracking(plan, directory, echo)  # train.report_to: the trials' parent record
    try:
        with tracking.joined():
            interrupted = _run_trials(study, objective, trials, timeout_minutes, echo, tracking)
        result = write_tune_results(study, plan, directory, trials, command, interrupted=interrupted)
    except BaseException:
        tracking.fail()
        raise
    tracking.finish(result)
    return result


def _run_trials(study, objective: "TrialObjective", trials: int, timeout_minutes: float | None, echo,
                tracking: SearchTracking) -> bool:
    """The loop: one trial at a time, a line after each; True when interrupted (Ctrl-C)."""
    started, durations, failures = time.monotonic(), [], 0
    while True:
        finished, running = _count(study, "COMPLETE", "PRUNED"), _count(study, "RUNNING")
        if finished + running >= trials:
            return False
        if timeout_minutes is not None and time.monotonic() - started >= timeout_minutes * 60:
            echo(f"ftune tune: --timeout {timeout_minutes:g} min reached; {finished} of {trials} trials finished. "
                 "Run the same command again to continue.")
            return False
        objective.position, objective.last_number = finished + 1, None
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,))
        except KeyboardInterrupt:
            trial = _trial(study, objective.last_number)
            if trial is not None and trial.state.name == "FAIL":
                retry_once(study, trial, echo)
            echo("ftune tune: interrupted; run the same command again (or `ftune tune --resume "
                 f"{objective.directory}`) to continue" + (f": trial #{trial.number} runs again first"
                                                          if trial is not None and trial.state.name == "FAIL" else ""))
            return True
        trial = _trial(study, objective.last_number)
        if trial is None:
            continue
        if trial.state.name in ("COMPLETE", "PRUNED") and trial.duration is not None:
            durations.append(trial.duration.total_seconds())
        failures = failures + 1 if trial.state.name == "FAIL" else 0
        echo(progress_line(study, trial, objective, durations))
        tracking.trials_ended(write_tune_results(study, objective.plan, objective.directory, trials, html=False))
        if failures >= MAX_FAILURES_IN_A_ROW:
            echo(f"ftune tune: {failures} trials in a row failed; stopping. The last: "
                 f"{trial.user_attrs.get('error', 'see the output above')}")
            return False


class TrialObjective:
    """One trial: the config with the trial's parameters, trained by the recipe its data calls
    for into ``<directory>/trials/<timestamp>-trial-NNN``; its value is the best validation
    metric of its evaluations (the weights it keeps)."""

    def __init__(self, plan: TunePlan, directory: Path, trials: int, echo=print):
        self.plan, self.directory, self.trials, self.echo = plan, Path(directory), trials, echo
        self.position = 1  # trial k of N, counting finished trials
        self.last_number: int | None = None

    def __call__(self, trial) -> float:
        import optuna

        from ftune.recipes.dispatch import train_for_objective
        from ftune.training.loop import ADDED_CALLBACKS
        from ftune.tuning.pruning import ReportToTrial

        self.last_number = trial.number
        trial.set_user_attr("worker", this_worker())
        params = {key: dimension.suggest(trial) for key, dimension in self.plan.space.items()}
        note = trial_note(trial.user_attrs)
        self.echo(f"\nftune tune: trial {self.position}/{self.trials} (#{trial.number}) {params_text(params)}"
                  + (f" [{note}]" if note else ""))
        config = self.trial_config(params, trial.number, trial.user_attrs)
        reporter = ReportToTrial(trial, f"eval_{self.plan.metric}", self.plan.maximize)
        token = ADDED_CALLBACKS.set((reporter,))
        try:
            run = train_for_objective(config, self.echo)
        except Exception as error:
            if not isinstance(error, FtuneError):
                traceback.print_exc()  # a bug, not a setting: the trace helps; the search goes on
            trial.set_user_attr("error", _error_text(error))
            raise
        finally:
            ADDED_CALLBACKS.reset(token)
        trial.set_user_attr("run_dir", str(run.run_dir))
        if run.metrics.get("training", {}).get("interrupted"):  # Ctrl-C: the run was saved, the search stops
            raise KeyboardInterrupt
        value = reporter.best if reporter.best is not None else _best_logged(run.run_dir, f"eval_{self.plan.metric}",
                                                                               self.plan.maximize)
        if value is None:
            raise FtuneError(f"the run logged no validation {self.plan.metric}")
        if reporter.pruned_at is not None:
            trial.set_user_attr("pruned_at_step", reporter.pruned_at)
            raise optuna.TrialPruned(f"pruned at step {reporter.pruned_at}")
        return value

    def trial_config(self, params: dict[str, Any], number: int, attrs: dict[str, Any]) -> Config:
        """The shared config with the trial's parameters, written under ``trials/``. The baselines
        are the same for every trial (same data, same split): measured in the first and the
        default config's trial only."""
        config = with_values(self.plan.config, params)
        config.run.dir, config.run.name = str(self.directory / TRIALS_DIR), f"trial-{number:03d}"
        if number != 0 and not attrs.get("default"):
            config.eval.baselines = False
        return config


def _error_text(error: Exception) -> str:
    """One line for the trials table: a config error's problems, an FtuneError's message, else the type too."""
    if isinstance(error, ConfigError):
        text = "; ".join(error.problems)
    else:
        text = str(error) if isinstance(error, FtuneError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:300]


def _best_logged(run_dir: Path, key: str, maximize: bool) -> float | None:
    """The best ``key`` in the run's log.jsonl (what the main process logged, e.g. when training
    ran over several processes and the trial's callback was not among them)."""
    path = Path(run_dir) / "log.jsonl"
    values = [record[key] for line in (path.read_text().splitlines() if path.is_file() else [])
              if line.strip() and isinstance((record := json.loads(line)).get(key), (int, float))]
    return (max(values) if maximize else min(values)) if values else None


# ---------------------------------------------------------------- the study and its storage

def open_study(plan: TunePlan, directory: Path, trials: int, pruner=None, echo=print):
    """The study (created, or loaded to resume) with a TPE sampler and the pruner; and its storage."""
    import warnings

    import optuna

    url = plan.storage_url(directory)
    try:
        with warnings.catch_warnings():  # Optuna marks the heartbeat as experimental
            warnings.simplefilter("ignore")
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=lambda study, trial: retry_once(study, trial, echo))
    except Exception as error:
        raise FtuneError(f"--storage {url}: cannot open the study storage ({type(error).__name__}: {error})") from None
    direction = "maximize" if plan.maximize else "minimize"
    study = optuna.create_study(storage=storage, study_name=plan.study_name, direction=direction, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise FtuneError(f"study {plan.study_name!r} in {url} is set to {study.direction.name.lower()}, this "
                         f"search would {direction} validation {plan.metric}; give another --study-name")
    # Seeded by train.seed and by the trials already there: a resumed search does not draw the
    # same random parameters as the process it continues. Processes sharing a --storage study
    # also differ by their host and pid, or two started together would draw the same trials.
    seed = plan.config.train.seed + len(study.trials)
    if plan.storage:
        seed += zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_000
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, trials // 3)))
    study.pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=max(2, min(5, trials // 4)))
    return study, storage


def recover_interrupted(study, storage, directory: Path, echo=print) -> list[int]:
    """Trials left running by a process of this machine that no longer runs: mark each failed
    (interrupted) and enqueue its parameters once more. Returns their numbers."""
    from optuna.trial import TrialState

    from ftune.runs.run_dir import RunDir, read_status

    found = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if worker and (worker.get("host") != socket.gethostname() or worker_alive(worker)):
            continue  # running elsewhere, or still running here; optuna's heartbeat covers other machines
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        for run in Path(directory, TRIALS_DIR).glob(f"*-trial-{trial.number:03d}"):
            if (read_status(run) or {}).get("state") == "started":
                RunDir(run).update_status(state="unfinished")
        retried = retry_once(study, trial, echo)
        echo(f"ftune tune: trial #{trial.number} was interrupted (its process ended while it trained)"
             + ("; its parameters run again" if retried else ""))
        found.append(trial.number)
    return found


def retry_once(study, trial, echo=print) -> bool:
    """Enqueue an interrupted trial's exact parameters, once: not when they already run again,
    nor when the trial was itself such a re-run (a crash that repeats is not run a third time)."""
    earlier = trial.user_attrs.get("retry_of")
    if earlier is not None:
        echo(f"ftune tune: trial #{trial.number} re-ran the parameters of #{earlier} and was interrupted too; "
             "they are not run a third time")
        return False
    if not trial.params:  # killed before it drew any: nothing was measured, nothing is lost
        echo(f"ftune tune: trial #{trial.number} was interrupted before it drew its parameters; nothing to run again")
        return False
    if any(t.user_attrs.get("retry_of") == trial.number for t in study.get_trials(deepcopy=False)):
        return False
    attrs = {"retry_of": trial.number, **({"default": True} if trial.user_attrs.get("default") else {})}
    study.enqueue_trial(dict(trial.params), user_attrs=attrs)
    return True


def this_worker() -> dict[str, Any]:
    """Which process runs a trial: host, pid and the process's start time (a reused pid differs in it)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid())}


def worker_alive(worker: dict[str, Any]) -> bool:
    from ftune.runs.unfinished import process_alive

    if not process_alive(worker.get("pid")):
        return False
    started = worker.get("started")
    return started is None or _process_start(int(worker["pid"])) == started


def _process_start(pid: int) -> int | None:
    """Linux: the process's start time in clock ticks since boot; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _count(study, *states: str) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in states)


def _trial(study, number: int | None):
    if number is None:
        return None
    return next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)


def _write_plan(plan: TunePlan, directory: Path) -> None:
    """The plan, written once: ``--resume DIR`` reads it back; another plan in the same directory
    is refused (a search's trials must all answer the same question)."""
    path = directory / PLAN_FILE
    if path.is_file():
        earlier = TunePlan.from_file(path)
        if earlier.settings() != plan.settings():
            changed = _differences(earlier.settings(), plan.settings())
            raise FtuneError(f"{directory} holds a search with other settings ({'; '.join(changed[:5])}); "
                             f"continue it with `ftune tune --resume {directory}`, or give another --out")
        return
    directory.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(plan.to_json())
    temporary.replace(path)


def _differences(before: dict, after: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out
