"""Run a comparison: each technique (and seed) in its own process, measured from outside.

A fresh process per technique keeps peak-memory figures clean (nothing left over from the
previous model) and isolates crashes. Results are rewritten after every technique, so an
interrupted comparison leaves a usable report; running it again skips finished techniques.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ftune.comparison.plan import ComparePlan, Slot
from ftune.config import epochs
from ftune.comparison.columns import TASK_METRICS
from ftune.settings import config_to_dict

FINISHED = ("ok", "not applicable")


def run_comparison(plan: ComparePlan, directory: Path, command: str = "", echo=print) -> dict[str, Path]:
    from ftune.tracking import open_comparison_tracking

    directory.mkdir(parents=True, exist_ok=True)
    plan_path = directory / "plan.json"
    if not plan_path.exists():
        plan_path.write_text(plan.to_json())
    # train.report_to: a parent record (an MLflow parent run) that each technique's run joins
    tracking = open_comparison_tracking(plan.config, directory, echo)
    try:
        files, stop = _run_slots(plan, directory, command, tracking.environment, echo)
    except BaseException:
        tracking.fail()
        raise
    tracking.finish(files, interrupted=stop)
    return files


def _run_slots(plan: ComparePlan, directory: Path, command: str, environment: dict[str, str],
               echo=print) -> tuple[dict[str, Path], bool]:
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    slots = plan.slots
    durations: list[float] = []
    stop = False
    for index, slot in enumerate(slots, 1):
        if finished(directory, slot):
            echo(f"ftune compare: [{index}/{len(slots)}] {slot.name}: finished in an earlier run, kept")
            continue
        remaining = sum(1 for s in slots[index - 1:] if not finished(directory, s))
        echo(f"\nftune compare: [{index}/{len(slots)}] {slot.method} (seed {slot.seed}); "
             f"{remaining} to run{_time_left(durations, remaining)}")
        outcome, stop = run_slot(plan, directory, slot, environment)
        durations.append(outcome["wall_time_s"])
        echo(f"ftune compare: {slot.name}: {outcome['status']} in {outcome['wall_time_s']:.0f} s, "
             f"peak RSS {outcome['peak_rss_mb']:,.0f} MB" + (f" ({outcome['note']})" if outcome.get("note") else ""))
        write_report(plan, directory, started, command)
        if stop:
            echo(f"ftune compare: interrupted; run the same command with --resume {directory} to continue")
            break
    return write_report(plan, directory, started, command), stop


def finished(directory: Path, slot: Slot) -> bool:
    path = directory / slot.name / "result.json"
    return path.exists() and json.loads(path.read_text()).get("status") in FINISHED


def run_slot(plan: ComparePlan, directory: Path, slot: Slot,
             environment: dict[str, str] | None = None) -> tuple[dict[str, Any], bool]:
    """Train one technique in a child process (``environment``: variables added to its own);
    its output passes through and is kept in output.log."""
    from ftune.training.checkpoints import resumable_runs_under

    slot_dir = directory / slot.name
    resuming = slot_dir.is_dir() and bool(resumable_runs_under(slot_dir))
    if slot_dir.exists() and not resuming:
        shutil.rmtree(slot_dir)  # an unfinished earlier attempt with no checkpoint: start it over
    for stale in ("worker.json", "result.json"):
        (slot_dir / stale).unlink(missing_ok=True)
    slot_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        (slot_dir / "config.json").write_text(json.dumps(config_to_dict(plan.slot_config(slot)), indent=2))
    started = time.monotonic()
    interrupted = False
    with open(slot_dir / "output.log", "ab" if resuming else "wb") as log:
        child = subprocess.Popen([sys.executable, "-m", "ftune.comparison.worker", str(slot_dir)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 env={**os.environ, **(environment or {})})
        while True:
            try:
                chunk = os.read(child.stdout.fileno(), 65536)
            except KeyboardInterrupt:
                # The child got the same Ctrl-C: it stops training, evaluates and saves. A second
                # Ctrl-C here ends it.
                if interrupted:
                    child.kill()
                interrupted = True
                continue
            if not chunk:
                break
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            log.write(chunk)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    outcome = _worker_outcome(slot_dir, child.returncode)
    outcome.update({"wall_time_s": round(time.monotonic() - started, 1), "peak_rss_mb": _rss_mb(usage.ru_maxrss),
                    "returncode": child.returncode})
    temporary = slot_dir / "result.json.tmp"
    temporary.write_text(json.dumps(outcome, indent=2))
    temporary.replace(slot_dir / "result.json")
    return outcome, interrupted


def _worker_outcome(slot_dir: Path, returncode: int) -> dict[str, Any]:
    path = slot_dir / "worker.json"
    if path.exists():
        return json.loads(path.read_text())
    lines = [line for line in (slot_dir / "output.log").read_text(errors="replace").splitlines() if line.strip()]
    last = lines[-1].strip()[-300:] if lines else ""
    return {"status": "failed", "note": f"the process ended with code {returncode}" + (f": {last}" if last else "")}


def _rss_mb(max_rss: int) -> float:
    """ru_maxrss is in kilobytes on Linux, bytes on macOS."""
    return round(max_rss / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _time_left(durations: list[float], remaining: int) -> str:
    if not durations:
        return ""
    seconds = sum(durations) / len(durations) * remaining
    return f", about {seconds / 60:.0f} min left" if seconds >= 60 else f", about {seconds:.0f} s left"


def write_report(plan: ComparePlan, directory: Path, started: str, command: str) -> dict[str, Path]:
    from ftune.comparison.collect import collect_rows
    from ftune.comparison.report import write_results

    rows, curves = collect_rows(plan, directory)
    t = plan.config.train
    limits = [f"{t.max_steps} steps" if t.max_steps is not None else "",
              f"{t.max_minutes:g} min" if t.max_minutes is not None else ""]
    budget = " or ".join(x for x in limits if x) or f"{epochs(t):g} epochs"
    task = task_name(rows)
    if t.max_steps is None and t.epochs is None and t.min_steps and task == "classification":
        budget += f" (more over small data, to reach train.min_steps = {t.min_steps} optimizer steps)"
    budget += " per technique"
    meta = {"model": plan.config.model.name, "data": plan.config.data.train, "task": task,
            "budget": budget, "seeds": len(plan.seeds), "started": started,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "device": plan.config.train.device,
            "command": command, "learning_rate": t.learning_rate or "each technique's default",
            "memory": "during training: resident memory (RSS) on CPU, allocated memory on GPU; "
                      "the whole process's peak RSS is peak_rss_mb in results.csv"}
    return write_results(directory, rows, curves, meta)


def task_name(rows: list[dict]) -> str:
    """classification, sft or dpo: the task whose scores the finished techniques report."""
    techniques = [r for r in rows if r.get("kind") == "technique"]
    for task in ("dpo", "sft"):
        first = TASK_METRICS[task][0]
        if any(first in r for r in techniques) and not any("accuracy" in r for r in techniques):
            return task
    return "classification"
