"""``ftune export``: refuse early, write into a staging directory, re-check the artifact in its
runtime beside the PyTorch run, and publish the directory with its ``export.json``."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ftune.errors import FtuneError
from ftune.export.target import ExportOptions


@dataclass
class ExportResult:
    directory: Path
    report: dict[str, Any]  # what export.json holds
    passed: bool


def default_out(run_dir: Path, target: str, options: ExportOptions) -> Path:
    suffix = {"gguf": f"-{options.quant}", "merged": f"-{options.dtype}", "onnx": "-int8" if options.int8 else ""}
    return run_dir / "exports" / f"{target}{suffix.get(target, '')}"


def export_run(run_dir: str | Path, target_name: str, out: str | Path | None = None,
               options: ExportOptions | None = None, *, max_drop: float | None = None,
               examples: int | None = None, check: bool = True, echo=print) -> ExportResult:
    from ftune.export.finished_run import FinishedRun
    from ftune.export.target import get_target

    options = options or ExportOptions()
    target = get_target(target_name)
    run = FinishedRun.open(run_dir)
    refusal = target.refusal(run, options)
    if refusal:
        raise FtuneError(f"{run.path}: cannot export this {run.method_name} run --to {target.name}: {refusal}")
    out = Path(out) if out else default_out(run.path, target.name, options)
    if out.exists():
        raise FtuneError(f"--out {out}: already exists; choose another directory or remove it")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        echo(f"ftune export: {run.path} ({run.objective}, {run.method_name}) --to {target.name} ...")
        artifact = target.write(run, staging, options, echo)
        report = {"target": target.name, "run": str(run.path), "options": asdict(options),
                  "files": artifact.files, "runtime": artifact.runtime, **artifact.details,
                  "size_mb": _size_mb(staging, artifact.model_files or artifact.files),
                  "total_mb": _size_mb(staging, artifact.files)}
        passed = True
        if check:
            from ftune.export.recheck import recheck

            report["check"] = recheck(run, target, artifact, max_drop=max_drop, examples=examples, echo=echo)
            passed = report["check"]["verdict"]["passed"]
        (staging / "export.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-written is left behind
        raise
    report["files"] = [str(out / name) for name in artifact.files]
    return ExportResult(out, report, passed)


def _size_mb(directory: Path, files: list[str]) -> float:
    return round(sum((directory / name).stat().st_size for name in files) / 2**20, 2)
