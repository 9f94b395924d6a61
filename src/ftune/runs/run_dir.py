"""The run directory: everything a run leaves behind, written so a crash never leaves a
half-written model that would load."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL_DIR = "model"
MODEL_INFO = "ftune-model.json"
STATUS = "status.json"


class RunDir:
    """``<parent>/<timestamp>-<name>/`` with atomic writers for each artefact."""

    def __init__(self, path: Path, resume_from: Path | None = None):
        self.path = Path(path)
        self.resume_from = resume_from  # the checkpoint an interrupted run continues from

    @classmethod
    def resuming(cls, path: str | Path, checkpoint: Path) -> "RunDir":
        """An interrupted run's existing directory, continued from ``checkpoint``."""
        return cls(Path(path), checkpoint)

    @classmethod
    def reserve(cls, parent: str | Path, name: str) -> "RunDir":
        """A new run's path, not yet created (``make`` creates it once training is sure to start)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
        base = Path(parent) / f"{stamp}-{safe}"
        path, n = base, 1
        while path.exists():  # two runs in the same second
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return cls(path)

    @classmethod
    def create(cls, parent: str | Path, name: str) -> "RunDir":
        run = cls.reserve(parent, name)
        run.make()
        return run

    def make(self) -> "RunDir":
        """Create the directory, marked as started by this process."""
        self.path.mkdir(parents=True)
        self.update_status(state="started", pid=os.getpid(), started=time.strftime("%Y-%m-%d %H:%M:%S"))
        return self

    def update_status(self, **fields: Any) -> None:
        """Merge ``fields`` into ``status.json`` (state: started, finished or unfinished)."""
        status = read_status(self.path) or {}
        status.update(fields, updated=time.strftime("%Y-%m-%d %H:%M:%S"))
        self.write_json(STATUS, status)

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; these are ordinary files
        os.replace(tmp, target)
        return target

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    def measured_once(self, name: str, measure) -> Any:
        """``measure()``, kept in the run as ``name``; a resumed run reads it back instead of
        measuring again (the base model before training does not change)."""
        path = self.path / name
        if self.resume_from is not None and path.is_file():
            return json.loads(path.read_text())
        value = measure()
        self.write_json(name, value)
        return value

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.path / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def staging_model_dir(self) -> Path:
        """A fresh directory to save the model into; ``publish_model`` makes it visible."""
        staging = self.path / f".{MODEL_DIR}.partial"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        return staging

    def publish_model(self, staging: Path, info: dict[str, Any]) -> Path:
        # The info file is what marks a model dir as loadable, so it is written last, then
        # the whole directory appears under its final name in one rename.
        (staging / MODEL_INFO).write_text(json.dumps(info, indent=2) + "\n")
        if self.model_dir.exists():
            shutil.rmtree(self.model_dir)
        os.replace(staging, self.model_dir)
        return self.model_dir


def unwritable_reason(parent: str | Path) -> str | None:
    """Why run directories cannot be created under ``parent`` (tried for real), or None."""
    try:
        Path(parent).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".ftune-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        return error.strerror or str(error)
    return None


def use_recorded_data_paths(config, path: str | Path) -> None:
    """Point ``config.data`` at the files the run at ``path`` read (its ``data.json``), not at
    paths relative to today's working directory."""
    manifest = Path(path) / "data.json"
    if manifest.is_file():
        for entry in json.loads(manifest.read_text()).get("files", []):
            if entry.get("role") in ("train", "validation") and entry.get("path"):
                setattr(config.data, entry["role"], entry["path"])


def read_status(path: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(path) / STATUS).read_text())
    except (OSError, ValueError):
        return None


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
