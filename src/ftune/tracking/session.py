"""The tracking of one run, as the training loop and the recipes use it:

    tracking = open_tracking(config, run, echo)    # build_trainer: nothing is recorded yet
    Trainer(callbacks=[..., *tracking.callbacks])  # as training begins, each tracker starts
    tracking.finish(run.path, metrics)             # once metrics.json and the model are written
    tracking.fail()                                # the run raised

A tracking still open when its process exits, or when the same process opens the next run's,
belongs to a run that raised before it finished: it is ended as failed, never left running
(nor marked finished by MLflow's own exit hook).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftune.errors import FtuneError
from ftune.tracking.base import Tracker, chosen_trackers, get_tracker_class

# Trackings opened in this process and not yet finished or failed, oldest first.
_OPEN: list["Tracking"] = []


@dataclass
class Tracking:
    """The trackers of one run: none when ``train.report_to`` is empty, and none on a process
    other than the main one of a distributed run."""

    trackers: list[Tracker] = field(default_factory=list)
    callbacks: list[Any] = field(default_factory=list)  # TrainerCallbacks for the Trainer
    run: Any = None  # ftune.runs.run_dir.RunDir
    echo: Any = print
    state: str = "open"  # open -> started -> finished | failed

    def start(self) -> None:
        """Start every tracker's record of the run (as training begins, on the main process)."""
        if self.state != "open" or not self.trackers:
            return
        self.state = "started"  # a tracker that fails to start is failed with the others
        try:
            for tracker in self.trackers:
                try:
                    tracker.start()
                except Exception as error:  # before the first step: better no run than an unrecorded one
                    raise FtuneError(f"train.report_to: {tracker.name} could not start recording the run "
                                     f"({type(error).__name__}: {error})") from error
        finally:
            # The last registered runs first: ahead of MLflow's own hook (registered when mlflow
            # is imported), which would mark a run that raised as finished.
            atexit.unregister(fail_open_tracking)
            atexit.register(fail_open_tracking)

    def finish(self, run_dir: str | Path, metrics: dict[str, Any]) -> None:
        """Record the finished run: its held-out and baseline scores, training figures and files.
        A tracker that cannot (a tracking server down) says so; the run itself is saved."""
        from ftune.tracking.values import final_figures

        if self.state in ("finished", "failed") or not self.trackers:
            return
        self.start()
        figures = final_figures(metrics)
        for tracker in self.trackers:
            try:
                tracker.finish(Path(run_dir), figures)
            except Exception as error:
                self.echo(f"ftune: train.report_to: {tracker.name} could not record the finished run "
                          f"({type(error).__name__}: {error}); the run itself is saved in {run_dir}")
                _quietly(tracker.fail)
        self._close("finished")

    def fail(self) -> None:
        """End every tracker's record as failed (the run raised before it finished)."""
        if self.state == "started":
            for tracker in self.trackers:
                _quietly(tracker.fail)
        if self.state in ("open", "started"):
            self._close("failed")

    def _close(self, state: str) -> None:
        self.state = state
        if self in _OPEN:
            _OPEN.remove(self)


def open_tracking(config, run, echo=print) -> Tracking:
    """The trackers ``train.report_to`` names, for ``run`` (a RunDir, created later), with the
    callbacks the Trainer needs; they start as training begins."""
    fail_open_tracking()  # a run of this process that raised before it finished
    names = chosen_trackers(config.train.report_to)
    if not names or not is_main_process():
        return Tracking(run=run, echo=echo)
    trackers = [_tracker(name, config, run, echo) for name in names]
    from ftune.tracking.callbacks import StartTracking

    tracking = Tracking(trackers, run=run, echo=echo)
    tracking.callbacks = [StartTracking(tracking), *(c for tracker in trackers for c in tracker.callbacks())]
    _OPEN.append(tracking)
    return tracking


def tracking_for_run(run_dir: str | Path) -> Tracking | None:
    """The open tracking of the run in ``run_dir``, if this process opened one."""
    return next((t for t in _OPEN if t.run is not None and Path(t.run.path) == Path(run_dir)), None)


def fail_open_tracking() -> None:
    """End as failed every tracking of this process that neither finished nor failed."""
    for tracking in list(_OPEN):
        tracking.fail()


def is_main_process() -> bool:
    """Only the main process of a distributed run (torchrun sets RANK) records anything."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def missing_package(name: str) -> str | None:
    """Why the tracker ``name`` cannot run here (its package is not installed), or None."""
    cls = get_tracker_class(name)
    if cls.package and importlib.util.find_spec(cls.package) is None:
        return f"{name} needs the {cls.package} package: pip install {cls.install or cls.package}"
    return None


@dataclass
class ParentTracking:
    """The parent records of ``ftune compare`` or ``ftune tune`` (an MLflow parent run): each
    technique's or trial's run joins them through ``environment`` (its process's variables; in
    this process, inside ``joined()``). A parent that cannot record says so; the results on disk
    stand."""

    parents: list[Any] = field(default_factory=list)
    echo: Any = print

    @property
    def environment(self) -> dict[str, str]:
        return {key: value for parent in self.parents for key, value in parent.environment.items()}

    @contextmanager
    def joined(self):
        """Runs started in this process meanwhile (tune's trials) are children of the parents."""
        before = {key: os.environ.get(key) for key in self.environment}
        os.environ.update(self.environment)
        try:
            yield self
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def tag_child(self, run_dir: Path, tags: dict[str, str], end_as: str | None = None) -> None:
        self._each("tag the run of " + Path(run_dir).name, lambda parent: parent.tag_child(run_dir, tags, end_as))

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self._each("record the figures", lambda parent: parent.log_metrics(metrics, step))

    def finish(self, files: dict[str, Path], interrupted: bool = False) -> None:
        self._each("record the finished report", lambda parent: parent.finish(files, interrupted))

    def fail(self) -> None:
        for parent in self.parents:
            _quietly(parent.fail)

    def _each(self, what: str, action) -> None:
        for parent in self.parents:
            try:
                action(parent)
            except Exception as error:
                self.echo(f"ftune: train.report_to: could not {what} ({type(error).__name__}: {error})")


def open_comparison_tracking(config, directory: Path, echo=print) -> ParentTracking:
    """The parent records of a comparison in ``directory`` (a resumed one continues its own)."""
    parents = [get_tracker_class(name).open_comparison(config, Path(directory), echo)
               for name in _installed_trackers(config)]
    return ParentTracking([p for p in parents if p is not None], echo)


def open_search_tracking(config, space: dict[str, str], directory: Path, echo=print) -> ParentTracking:
    """The parent records of a search in ``directory`` (a resumed one continues its own);
    ``space``: each searched key's description."""
    parents = [get_tracker_class(name).open_search(config, space, Path(directory), echo)
               for name in _installed_trackers(config)]
    return ParentTracking([p for p in parents if p is not None], echo)


def _installed_trackers(config) -> list[str]:
    names = chosen_trackers(config.train.report_to)
    for name in names:
        problem = missing_package(name)
        if problem:
            raise FtuneError(f"train.report_to: {problem}")
    return names


def _tracker(name: str, config, run, echo) -> Tracker:
    problem = missing_package(name)  # checked with the config too; a resumed run's config is not
    if problem:
        raise FtuneError(f"train.report_to: {problem}")
    return get_tracker_class(name)(config, run, echo)


def _quietly(action) -> None:
    try:
        action()
    except Exception:  # ending a record must never hide the error that ended the run
        pass
