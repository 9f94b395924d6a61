"""What checkpoints cost: training tokens/s with checkpoints against none, in one run.

Trains the same SFT job twice (SmolLM2-135M + LoRA on the Alpaca sample by default), each
``ftune train`` in its own process: once with ``train.checkpoint_every=off`` and once with a
checkpoint every ``--every`` optimizer steps, so a short run writes several. From the second it
takes the time each checkpoint took to write (``status.json``), and projects the overhead at
the default interval (``train.checkpoint_every=5m``): seconds per checkpoint / 300 s.
Prints one JSON object.

    python bench/checkpoint_overhead.py --steps 24 --every 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_2k.jsonl"
DEFAULT_INTERVAL_S = 300.0  # train.checkpoint_every's default, 5m


def train(arguments: list[str], every: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="ftune-bench-") as scratch:
        command = [sys.executable, "-m", "ftune.cli.main", "train", *arguments, f"run.dir={scratch}",
                   f"train.checkpoint_every={every}"]
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        if done.returncode != 0:
            sys.exit(f"ftune train failed:\n{done.stderr[-3000:]}")
        (run,) = [p for p in Path(scratch).iterdir() if p.is_dir()]
        training = json.loads((run / "metrics.json").read_text())["training"]
        status = json.loads((run / "status.json").read_text())
    return {"tokens_per_second": training["tokens_per_second"], "training_seconds": training["seconds"]
            - training["evaluation_seconds"], "steps": training["optimizer_steps"],
            "checkpoints": status.get("checkpoints_written", 0),
            "checkpoint_seconds": status.get("checkpoint_seconds", 0.0),
            "checkpoint_mb": (status.get("last_checkpoint") or {}).get("mb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--method", default="lora")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--every", type=int, default=6, help="checkpoint interval of the measured run, in steps")
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"{args.data} not found (the shared data sets live in ../shared/data)")
    arguments = [f"model={args.model}", f"data.train={args.data}", f"method={args.method}",
                 f"train.max_steps={args.steps}", f"data.max_rows={args.rows}", "generate.samples=0",
                 f"train.batch_size={args.batch_size}",
                 "train.evals_per_epoch=1"]
    print("bench: without checkpoints ...", file=sys.stderr, flush=True)
    without = train(arguments, "off")
    print(f"bench: a checkpoint every {args.every} steps ...", file=sys.stderr, flush=True)
    with_ = train(arguments, str(args.every))
    per_checkpoint = with_["checkpoint_seconds"] / max(with_["checkpoints"], 1)
    print(json.dumps({
        "model": args.model, "method": args.method, "steps": args.steps, "batch_size": args.batch_size,
        "checkpoint_every_steps": args.every,
        "tokens_per_s_without_checkpoints": without["tokens_per_second"],
        "tokens_per_s_with_checkpoints": with_["tokens_per_second"],
        "with_over_without": round(with_["tokens_per_second"] / without["tokens_per_second"], 4),
        "checkpoints_written": with_["checkpoints"], "seconds_per_checkpoint": round(per_checkpoint, 3),
        "checkpoint_mb": with_["checkpoint_mb"],
        "measured_overhead_share": round(with_["checkpoint_seconds"] / with_["training_seconds"], 4),
        "projected_overhead_at_default_5m": round(per_checkpoint / (DEFAULT_INTERVAL_S + per_checkpoint), 5),
    }, indent=2))


if __name__ == "__main__":
    main()
