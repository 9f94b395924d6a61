"""Runs whose process ended without finishing: usually the kernel's OOM killer, which ends a
process with no message at all. The next ``ftune`` command in the same directory says so."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ftune.runs.run_dir import read_status


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def unfinished_runs(parent: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Run directories under ``parent`` marked started whose process is gone."""
    found = []
    for status_file in sorted(Path(parent).glob("*/status.json")):
        status = read_status(status_file.parent)
        if status and status.get("state") == "started" and not process_alive(status.get("pid")):
            found.append((status_file.parent, status))
    return found


def describe_unfinished(path: Path, status: dict[str, Any]) -> str:
    step = status.get("last_step")
    progress = f"after optimizer step {step}" if step else "before its first optimizer step finished"
    text = f"{path} did not finish: its process ended {progress} (last update {status.get('updated', '?')})"
    if status.get("peak_memory_mb"):
        text += f"; peak memory so far {status['peak_memory_mb']:,.0f} MB"
    if status.get("planned_peak_mb"):
        text += f", planned {status['planned_peak_mb']:,.0f} MB of a {status.get('memory_budget_mb', 0):,.0f} MB budget"
    return (text + ". If it printed no error, the system most likely killed it for lack of memory "
            "(a lower train.memory_limit or model.max_length helps).")


def report_unfinished_runs(parent: str | Path = "runs", echo=print) -> list[Path]:
    """Say once about each run that ended without finishing, then mark it ``unfinished``."""
    from ftune.runs.run_dir import RunDir

    reported = []
    for path, status in unfinished_runs(parent):
        echo(f"ftune: {describe_unfinished(path, status)}")
        try:
            RunDir(path).update_status(state="unfinished")
        except OSError:
            pass
        reported.append(path)
    return reported
