"""The memory plan's estimate against the measured peak, for each objective and technique.

Runs ``ftune train`` a few optimizer steps for classification (SST-2), SFT (the Alpaca sample)
and DPO (the HH-RLHF sample), each with lora, full and qlora on SmolLM2-135M, one process
at a time, with the defaults otherwise (batch 16, default max lengths, the default budget).
For each it reads the run's ``metrics.json``: the planned peak, the peak measured on the
longest batch before training, and the peak resident memory of the training phase (RSS on
CPU, allocated memory on GPU). Prints one JSON object; ``ratio`` is estimate / measured
(above 1: the estimate was on the safe side).

    python bench/memory_plan.py                 # all 9 (about 30 minutes on 2 CPU cores)
    python bench/memory_plan.py --only sft-lora --steps 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OBJECTIVES = {
    "classification": [f"data.train={SHARED}/sst2/train.tsv", "data.max_rows=2000"],
    "sft": [f"data.train={SHARED}/alpaca/alpaca_2k.jsonl", "data.max_rows=600"],
    "dpo": [f"data.train={SHARED}/hh_rlhf/train.jsonl", "objective=dpo", "data.max_rows=300"],
}
METHODS = ("lora", "full", "qlora")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per classification and SFT run")
    parser.add_argument("--dpo-steps", type=int, default=1,
                        help="optimizer steps per DPO run (its longest batch, 32,768 tokens, takes minutes on CPU)")
    parser.add_argument("--only", nargs="*", help="names such as sft-lora")
    args = parser.parse_args()
    ftune = Path(sys.executable).with_name("ftune")
    rows = []
    for objective, data in OBJECTIVES.items():
        for method in METHODS:
            name = f"{objective}-{method}"
            if args.only and name not in args.only:
                continue
            steps = args.dpo_steps if objective == "dpo" else args.steps
            rows.append(_measure(ftune, name, method, data, steps))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"model": "smollm2-135m", "steps": args.steps, "dpo_steps": args.dpo_steps, "runs": rows},
                     indent=2))


def _measure(ftune: Path, name: str, method: str, data: list[str], steps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ftune-bench-mem-") as directory:
        started = time.monotonic()
        result = subprocess.run(
            [str(ftune), "train", "model=smollm2-135m", f"method={method}", *data, f"train.max_steps={steps}",
             "generate.samples=0", f"run.dir={directory}"],
            capture_output=True, text=True)
        row = {"name": name, "steps": steps, "exit_code": result.returncode,
               "wall_s": round(time.monotonic() - started, 1)}
        metrics_files = list(Path(directory).glob("*/metrics.json"))
        if result.returncode or not metrics_files:
            row["error"] = result.stderr[-800:]
            return row
        training = json.loads(metrics_files[0].read_text())["training"]
        plan = training.get("memory_plan") or {}
        measured = training["peak_training_memory_mb"]
        row.update({
            "estimate_mb": plan.get("estimate_mb"), "measured_peak_mb": measured,
            "check_peak_mb": plan.get("check_peak_mb"), "first_estimate_mb": plan.get("first_estimate_mb"), "ratio": round(plan["estimate_mb"] / measured, 3) if plan else None,
            "budget_mb": plan.get("budget_mb"), "micro_batch_tokens": plan.get("micro_batch_tokens"),
            "longest_batch_tokens": plan.get("longest_batch_tokens"),
            "gradient_checkpointing": plan.get("gradient_checkpointing"), "replanned": plan.get("replanned"),
            "parts_mb": plan.get("parts_mb"),
        })
        return row


if __name__ == "__main__":
    main()
