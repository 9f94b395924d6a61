"""Data-parallel training on one machine: N processes (DDP, gloo on CPU) against 1 process
with the same global batch, on SST-2 with MiniLM + LoRA for a fixed number of optimizer steps.

Both runs are the real command a user types, each in its own process tree:

    ftune train configs/sst2-minilm-lora.yaml train.max_steps=S train.batch_size=B*N
    ftune train configs/sst2-minilm-lora.yaml train.max_steps=S train.batch_size=B train.processes=N

(``train.max_minutes`` off, baselines off, the same seed and held-out split). Prints one JSON
object: the wall time of each, the final training loss (mean of the last logged losses),
held-out accuracy and loss, and the largest difference between the saved adapter weights.
Dropout draws differ between one process and several, so the runs agree within a tolerance,
not bitwise; the tolerances are in the JSON and ``agree`` says whether they held.

    python bench/ddp_cpu.py                  # 300 steps, global batch 16, 2 processes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sst2-minilm-lora.yaml"
TOLERANCE = {"final_loss": 0.05, "accuracy": 0.02}  # absolute


def train(run_dir: Path, settings: list[str]) -> dict:
    command = [sys.executable, "-m", "ftune", "train", str(CONFIG), "train.max_minutes=", "eval.baselines=false",
               "generate.samples=0", f"run.dir={run_dir}", *settings]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    (run,) = [p for p in run_dir.iterdir() if p.is_dir()]
    metrics = json.loads((run / "metrics.json").read_text())
    losses = [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]
    model = metrics["validation"]["model"]
    return {"command": " ".join(command[1:]), "wall_seconds": round(wall, 1),
            "training_seconds": metrics["training"]["seconds"],
            "optimizer_steps": metrics["training"]["optimizer_steps"],
            "final_loss": round(sum(losses[-5:]) / len(losses[-5:]), 4),
            "validation_accuracy": round(model["accuracy"], 4), "validation_loss": round(model["loss"], 4),
            "precision": metrics["training"]["precision"], "run": str(run)}


def weights_difference(a: str, b: str) -> float:
    from safetensors.torch import load_file

    (first,), (second,) = (list((Path(r) / "model").glob("*.safetensors")) for r in (a, b))
    x, y = load_file(str(first)), load_file(str(second))
    return max((x[k] - y[k]).abs().max().item() for k in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16, help="global batch (rows per optimizer step)")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    if args.batch % args.processes:
        raise SystemExit("--batch must be a multiple of --processes")
    common = [f"train.max_steps={args.steps}"]
    with tempfile.TemporaryDirectory(prefix="ftune-ddp-bench-") as scratch:
        one = train(Path(scratch) / "one", [*common, f"train.batch_size={args.batch}"])
        many = train(Path(scratch) / "many", [*common, f"train.batch_size={args.batch // args.processes}",
                                             f"train.processes={args.processes}"])
        difference = weights_difference(one["run"], many["run"])
    for result in (one, many):
        result.pop("run")
    gaps = {"final_loss": abs(one["final_loss"] - many["final_loss"]),
            "accuracy": abs(one["validation_accuracy"] - many["validation_accuracy"])}
    print(json.dumps({
        "benchmark": "ddp_cpu", "steps": args.steps, "global_batch": args.batch, "processes": args.processes,
        "one_process": one, "processes_run": many,
        "wall_time_ratio": round(many["wall_seconds"] / one["wall_seconds"], 3),
        "training_time_ratio": round(many["training_seconds"] / max(one["training_seconds"], 1e-9), 3),
        "gaps": {k: round(v, 4) for k, v in gaps.items()}, "tolerance": TOLERANCE,
        "agree": all(gaps[k] <= TOLERANCE[k] for k in TOLERANCE),
        "max_adapter_weight_difference": difference,
    }, indent=2))


if __name__ == "__main__":
    main()
