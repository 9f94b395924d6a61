"""The interface every export target implements, and the registry that holds them.

A target is one module in ``ftune.export.targets``: it says which runs it can ship
(``refusal``, decided from the run's files before anything loads), writes its artifact
(``write``), and loads that artifact back in its own runtime to score it (``runtime``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ftune.export.finished_run import FinishedRun


@dataclass
class ExportOptions:
    dtype: str = "fp32"  # merged: fp32 | bf16 | fp16
    quant: str = "f16"  # gguf: f16 | q8_0
    int8: bool = False  # onnx: dynamic int8 quantization


@dataclass
class Artifact:
    """What a target wrote: the files (inside the output directory) and how to load them."""

    directory: Path
    files: list[str]
    runtime: str  # "transformers", "llama.cpp", "onnxruntime", ...
    details: dict[str, Any] = field(default_factory=dict)
    # the files the runtime runs, whose size is reported (default: all of ``files``); e.g. only
    # model.int8.onnx of an --int8 export
    model_files: list[str] = field(default_factory=list)


class ExportTarget:
    name: ClassVar[str]
    description: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ("classification", "causal_lm")
    # the fixed file names the target writes inside --out (documented by `ftune export --help`)
    file_names: ClassVar[str] = ""

    def problem(self, run: FinishedRun, options: ExportOptions) -> str | None:
        """Why this run cannot be exported to this target (None when it can). Decided from the
        run's files only: nothing heavy is loaded before a refusal. Targets extend it."""
        if run.task not in self.tasks:
            kind = "classifier" if run.task == "classification" else "generative"
            wanted = " or ".join("classifier" if t == "classification" else "generative" for t in self.tasks)
            return f"--to {self.name} takes {wanted} runs; this is a {kind} run"
        return None

    def refusal(self, run: FinishedRun, options: ExportOptions) -> str | None:
        """``problem``, followed by the targets this run can reach instead."""
        reason = self.problem(run, options)
        if reason is None:
            return None
        others = [name for name in target_names()
                  if name != self.name and get_target(name).problem(run, ExportOptions()) is None]
        return reason + (f"; it can be exported --to {', '.join(others)}" if others else "; no export target takes it")

    def write(self, run: FinishedRun, out: Path, options: ExportOptions, echo=print) -> Artifact:
        raise NotImplementedError

    def runtime(self, artifact: Artifact, run: FinishedRun):
        """A scorer of the artifact in its own runtime (``ftune.export.check``'s interfaces):
        a ``Classifier`` for classifier runs, a ``LanguageModel`` for generative ones."""
        raise NotImplementedError


_TARGETS: dict[str, type[ExportTarget]] = {}
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def register_target(name: str):
    def decorate(cls: type[ExportTarget]) -> type[ExportTarget]:
        if not _NAME.match(name) or name in _TARGETS:
            raise ValueError(f"export target {name!r}: bad or already registered")
        cls.name = name
        _TARGETS[name] = cls
        return cls

    return decorate


def target_names() -> list[str]:
    _discover()
    return list(_TARGETS)


def get_target(name: str) -> ExportTarget:
    from ftune.errors import FtuneError

    _discover()
    if name not in _TARGETS:
        raise FtuneError(f"--to {name}: unknown export target; choose from {', '.join(_TARGETS)}")
    return _TARGETS[name]()


def _discover() -> None:
    from ftune.discovery import import_submodules

    import_submodules("ftune.export.targets")
