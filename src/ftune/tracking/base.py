"""The tracker registry: one module per backend in ``ftune.tracking.backends``, each registered
with ``@register_tracker``, found the first time the registry is asked (``ftune.discovery``).

A backend module imports its package (mlflow, wandb, ...) only inside its methods, so that
``train.report_to`` can be checked against the registry in milliseconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

_REGISTRY: dict[str, type["Tracker"]] = {}
RECORD = "tracking.json"  # in the run directory: each tracker's ids, so a resumed run continues its record
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass
class FinalFigures:
    """What a finished run reports once: numbers (held-out scores, baselines, training figures)
    under flat dotted names, texts (the verdict, the device), and the step they belong to."""

    scalars: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    step: int = 0


class Tracker:
    """One backend recording one run. ``callbacks`` are transformers' own per-step callbacks;
    ``start`` runs as training begins, ``finish`` once ``metrics.json`` and the model are
    written, ``fail`` when the run raised. All run on the main process only."""

    name: ClassVar[str] = ""
    package: ClassVar[str] = ""  # the module that must be importable
    install: ClassVar[str] = ""  # what to pip install when it is not

    def __init__(self, config, run, echo=print):
        self.config = config  # ftune.config.Config
        self.run = run  # ftune.runs.run_dir.RunDir
        self.echo = echo

    def callbacks(self) -> list[Any]:
        return []

    def recorded(self) -> dict[str, Any]:
        """What this tracker recorded in the run directory (an earlier attempt of a resumed run)."""
        path = self.run.path / RECORD
        return json.loads(path.read_text()).get(self.name, {}) if path.is_file() else {}

    def record(self, **values: Any) -> None:
        path = self.run.path / RECORD
        everything = json.loads(path.read_text()) if path.is_file() else {}
        everything[self.name] = values
        self.run.write_json(RECORD, everything)

    def start(self) -> None:
        pass

    def finish(self, figures: FinalFigures) -> None:
        pass

    def fail(self) -> None:
        pass

    @classmethod
    def open_comparison(cls, config, directory, echo=print):
        """For ``ftune compare``: a parent record the techniques' runs join (see
        ``ftune.tracking.session.ParentTracking``), or None when the backend has none."""
        return None

    @classmethod
    def open_search(cls, config, space, directory, echo=print):
        """For ``ftune tune``: a parent record the trials' runs join, holding ``config`` and the
        search ``space`` (``{key: description}``), or None when the backend needs none (each
        trial's run is recorded as any run is)."""
        return None


def register_tracker(name: str):
    """Class decorator: add a tracking backend to the registry under ``name``."""

    def decorate(cls: type[Tracker]) -> type[Tracker]:
        if not _NAME_PATTERN.match(name) or name == "none":
            raise ValueError(f"tracker name {name!r} must be lowercase letters, digits, - or _ (and not none)")
        if name in _REGISTRY:
            raise ValueError(f"tracker {name!r} is already registered by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def tracker_names() -> list[str]:
    _import_backends()
    return sorted(_REGISTRY)


def get_tracker_class(name: str) -> type[Tracker]:
    _import_backends()
    return _REGISTRY[name]


def chosen_trackers(report_to: list[str]) -> list[str]:
    """``train.report_to`` without ``none`` and repeats, in the order given."""
    return [name for name in dict.fromkeys(report_to) if name != "none"]


def _import_backends() -> None:
    from ftune.discovery import import_submodules

    import_submodules("ftune.tracking.backends")  # each module's @register_tracker adds its backend
