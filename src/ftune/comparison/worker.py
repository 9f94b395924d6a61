"""One technique of a comparison, in a process of its own: ``python -m ftune.comparison.worker SLOT_DIR``.

Reads ``SLOT_DIR/config.json``, trains into ``SLOT_DIR`` as ``ftune train`` would, and writes
``SLOT_DIR/worker.json``: ``{"status": "ok" | "not applicable" | "failed" | "interrupted",
"run_dir": ..., "note": ...}``. The parent measures the process (wall time, peak RSS). An earlier
attempt that left a checkpoint (``ftune compare --resume``) continues from it, not from zero.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def train_slot(slot_dir: Path) -> dict:
    from ftune.recipes.dispatch import train_for_objective
    from ftune.settings import config_from_dict
    from ftune.errors import FtuneError, MethodNotApplicable

    from ftune.training.checkpoints import resumable_runs_under, resume_run

    config = config_from_dict(json.loads((slot_dir / "config.json").read_text()))
    config.run.dir, config.run.name = str(slot_dir), config.method.name
    try:
        earlier = resumable_runs_under(slot_dir)  # an attempt cut short: go on from its checkpoint
        if earlier:
            config, run = resume_run(earlier[-1])
            result = train_for_objective(config, resume=run)
        else:
            result = train_for_objective(config)
    except MethodNotApplicable as error:
        return {"status": "not applicable", "note": str(error)}
    except FtuneError as error:
        return {"status": "failed", "note": str(error)}
    except KeyboardInterrupt:
        return {"status": "interrupted", "note": "interrupted before training finished"}
    except Exception as error:  # a crash in one technique must not end the comparison
        traceback.print_exc()
        return {"status": "failed", "note": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
    interrupted = bool(result.metrics.get("training", {}).get("interrupted"))
    return {"status": "interrupted" if interrupted else "ok", "run_dir": str(result.run_dir),
            "note": "stopped early by Ctrl-C" if interrupted else ""}


def main(argv: list[str]) -> int:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")
    slot_dir = Path(argv[0])
    outcome = train_slot(slot_dir)
    temporary = slot_dir / "worker.json.tmp"
    temporary.write_text(json.dumps(outcome, indent=2))
    temporary.replace(slot_dir / "worker.json")
    return 0 if outcome["status"] in ("ok", "not applicable") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
