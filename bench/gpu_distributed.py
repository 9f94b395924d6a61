"""SFT of SmolLM2 with LoRA across 2 GPUs with each of ftune's distributed strategies (DDP,
FSDP2, DeepSpeed ZeRO-2, ZeRO-3) against 1 GPU with the same global batch, through the real
command line; then `ftune eval` on each saved run (a sharded run must have saved a whole,
reloadable model). Prints one JSON object.

    python bench/gpu_distributed.py                 # needs 2 CUDA GPUs; DeepSpeed rows need deepspeed
    python bench/gpu_distributed.py --dry-run       # the commands it would run, anywhere

Each run: `ftune train model=smollm2-135m data.train=<alpaca> train.max_steps=S
train.batch_size=B train.processes=2 train.distributed=X` (the single-GPU run uses 2B and
one process), baselines and samples off. Reported per run: wall seconds, training seconds,
real tokens/s, peak GPU memory of the main process, final training loss, held-out loss and
perplexity from `metrics.json`, and the held-out loss `ftune eval` measures on the saved run.
The held-out figures of every strategy should agree with the single-GPU run's to about 1%
(LoRA dropout draws differ between runs).

Written where no GPU was available: it has been run only with `--dry-run`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "alpaca" / "alpaca_2k.jsonl"
STRATEGIES = ("ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3")


def plan(args, scratch: Path) -> list[dict]:
    common = ["model=smollm2-135m", f"data.train={args.data}", f"train.max_steps={args.steps}",
              "eval.baselines=false", "generate.samples=0", "train.device=cuda"]
    runs = [{"name": "one_gpu", "settings": [*common, f"train.batch_size={2 * args.batch}"]}]
    for strategy in args.strategies:
        runs.append({"name": strategy, "settings": [*common, f"train.batch_size={args.batch}", "train.processes=2",
                                                    f"train.distributed={strategy}"]})
    for run in runs:
        run["run_dir"] = str(scratch / run["name"])
        run["command"] = [sys.executable, "-m", "ftune", "train", *run["settings"], f"run.dir={run['run_dir']}"]
    return runs


def execute(run: dict) -> dict:
    started = time.monotonic()
    done = subprocess.run(run["command"], cwd=REPO, capture_output=True, text=True)
    result = {"wall_seconds": round(time.monotonic() - started, 1), "returncode": done.returncode}
    if done.returncode != 0:
        return {**result, "error": done.stderr[-2000:]}
    (run_dir,) = [p for p in Path(run["run_dir"]).iterdir() if p.is_dir()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    training = metrics["training"]
    losses = [r["loss"] for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if "loss" in r]
    after = metrics.get("validation", {}).get("after", {})
    result.update({"training_seconds": training["seconds"], "tokens_per_second": training["tokens_per_second"],
                   "peak_gpu_memory_mb": training["peak_training_memory_mb"], "precision": training["precision"],
                   "final_training_loss": round(sum(losses[-5:]) / max(len(losses[-5:]), 1), 4),
                   "held_out_loss": after.get("loss"), "held_out_perplexity": after.get("perplexity")})
    check = subprocess.run([sys.executable, "-m", "ftune", "eval", str(run_dir), "--data", str(DATA), "--json"], cwd=REPO,
                           capture_output=True, text=True)
    result["ftune_eval_ok"] = check.returncode == 0
    if check.returncode != 0:
        result["ftune_eval_error"] = check.stderr[-1000:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=8, help="rows per GPU per step")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args()
    if importlib.util.find_spec("deepspeed") is None and not args.dry_run:
        args.strategies = [s for s in args.strategies if not s.startswith("deepspeed")]
    with tempfile.TemporaryDirectory(prefix="ftune-gpu-distributed-") as scratch:
        runs = plan(args, Path(scratch))
        if args.dry_run:
            print(json.dumps({"benchmark": "gpu_distributed", "dry_run": True,
                              "commands": {r["name"]: r["command"][1:] for r in runs}}, indent=2))
            return
        import torch

        if torch.cuda.device_count() < 2:
            raise SystemExit(f"needs 2 CUDA GPUs, found {torch.cuda.device_count()}")
        results = {run["name"]: execute(run) for run in runs}
    reference = results["one_gpu"].get("held_out_loss")
    for name, result in results.items():
        if reference and result.get("held_out_loss") is not None:
            result["held_out_loss_vs_one_gpu"] = round(result["held_out_loss"] / reference, 4)
    print(json.dumps({"benchmark": "gpu_distributed", "gpus": torch.cuda.device_count(),
                      "gpu": torch.cuda.get_device_name(0), "steps": args.steps, "global_batch": 2 * args.batch,
                      "runs": results}, indent=2))


if __name__ == "__main__":
    main()
