"""Learning curves: held-out accuracy against minutes of training, for the old and the new
defaults, on one config with the same time budget, drawn in one plot.

Each variant is the real command a user types, run one after the other in its own process:

    ftune train CONFIG train.max_minutes=M train.evals_per_epoch=E [variant overrides]

``old`` is the defaults before the speed work of issue 16 (fp32 on the CPU; classifiers trained
3 epochs over small data rather than ``train.min_steps``); ``new`` is today's defaults, with no
override. Every held-out evaluation during training is a point (minutes of training, not of
evaluation, on the x axis); the final figure is the run's reported accuracy (its best
evaluation's weights). Prints one JSON object and writes the plot as a PNG.

    python bench/learning_curve.py                                   # SST-2, 10 minutes each
    python bench/learning_curve.py --config configs/agnews-minilm-lora.yaml --minutes 10

The run refuses to report while other work keeps the CPU busy (a shared CPU slows the steps a
time budget buys): ``--allow-shared-cpu`` skips that, for smoke tests only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from machine import QuietCpu  # noqa: E402  (bench/machine.py)

CONFIG = REPO / "configs" / "sst2-minilm-lora.yaml"
VARIANTS = {
    "old": ["train.precision=fp32", "train.min_steps=0"],
    "new": [],
}


def curve_of(run: Path) -> list[dict[str, float]]:
    """(minutes of training, held-out accuracy) at each evaluation of a run's log.jsonl. The
    log's ``seconds`` include earlier evaluations; their ``eval_runtime`` is taken off."""
    points, evaluating = [], 0.0
    for line in (run / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "eval_accuracy" in entry:
            points.append({"minutes": round((entry["seconds"] - evaluating) / 60, 3), "step": entry["step"],
                           "accuracy": round(entry["eval_accuracy"], 4)})
            evaluating += entry.get("eval_runtime", 0.0)
    return points


def train(config: Path, run_dir: Path, minutes: float, evals_per_epoch: int, overrides: list[str]) -> dict:
    command = [sys.executable, "-m", "ftune", "train", str(config), f"train.max_minutes={minutes}",
               f"train.evals_per_epoch={evals_per_epoch}", "eval.baselines=false", f"run.dir={run_dir}", *overrides]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    (run,) = [p for p in run_dir.iterdir() if p.is_dir()]
    metrics = json.loads((run / "metrics.json").read_text())
    training = metrics["training"]
    return {"command": " ".join(["ftune", *command[3:]]), "overrides": overrides,
            "wall_seconds": round(time.monotonic() - started, 1),
            "accuracy": round(metrics["validation"]["model"]["accuracy"], 4),
            "optimizer_steps": training["optimizer_steps"], "epochs": training["epochs"],
            "training_seconds": training["seconds"], "examples_per_second": training["examples_per_second"],
            "precision": training["precision"], "curve": curve_of(run), "run": str(run)}


def draw(results: dict[str, dict], title: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for (name, result), color in zip(results.items(), ("0.45", "C0", "C1", "C2")):
        curve = result["curve"]
        label = f"{name}{' defaults' if name in VARIANTS else ''} ({result['precision']}): {result['accuracy']:.4f}"
        ax.plot([p["minutes"] for p in curve], [p["accuracy"] for p in curve], marker="o", color=color, label=label)
    ax.set_xlabel("minutes of training (evaluations excluded)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--minutes", type=float, default=10.0, help="train.max_minutes of each run")
    parser.add_argument("--evals-per-epoch", type=int, default=6)
    parser.add_argument("--variants", default="old,new", help=f"which of {', '.join(VARIANTS)}, in order")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                        help="one more variant to try beside old and new, e.g. all-linear:method.target_modules=all-linear")
    parser.add_argument("--plot", default="learning_curve.png", help="where the PNG goes")
    parser.add_argument("--allow-shared-cpu", action="store_true", help="smoke tests only: never report its figures")
    parser.add_argument("overrides", nargs="*", help="key=value given to every variant (e.g. data.max_rows=2000)")
    args = parser.parse_args()
    quiet = QuietCpu(allow_shared=args.allow_shared_cpu)
    variants = dict(VARIANTS)
    for extra in args.variant:
        name, _, settings = extra.partition(":")
        variants[name] = [s for s in settings.split(",") if s]
    names = args.variants.split(",") + [extra.partition(":")[0] for extra in args.variant]
    results = {}
    runs = Path(tempfile.mkdtemp(prefix="ftune-curve-"))  # kept: each run can be evaluated again
    for name in names:
        quiet.check(f"before the {name} run")
        results[name] = train(Path(args.config), runs / name, args.minutes, args.evals_per_epoch,
                              [*args.overrides, *variants[name]])
        (runs / "results.json").write_text(json.dumps(results, indent=2))  # a later failure keeps this one
        quiet.check(f"after the {name} run")
    config_name = Path(args.config).stem
    draw(results, f"{config_name}: {args.minutes:g} minutes of training", Path(args.plot))
    print(json.dumps({"config": args.config, "minutes": args.minutes, "plot": str(Path(args.plot).resolve()),
                      "cpu_samples": quiet.samples, "cpu_shared_allowed": args.allow_shared_cpu,
                      "variants": results}, indent=2))


if __name__ == "__main__":
    main()
