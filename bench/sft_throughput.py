"""SFT training throughput: ftune vs TRL's fastest batching vs the common padded recipe.

Trains the same model (SmolLM2-135M by default), the same Alpaca rows and the same LoRA
settings several ways, each in its own process so peak memory is its own:

- ftune: ftune's defaults: loss masks, length-grouped dynamic padding, its training loop, the
  precision ``train.precision=auto`` picks (bf16 autocast on CPUs with native bf16), fused
  AdamW and SDPA attention;
- one row per lever, ftune with that one lever undone (``fp32``: no bf16 autocast;
  ``unfused_adamw``: AdamW's per-parameter loop; ``eager_attention``: no SDPA;
  ``fp32_frozen_weights``: the frozen base weights kept in fp32 under autocast, see
  ftune.training.frozen_weights; ``flash_short_rows``: SDPA's flash kernel for short rows too,
  see ftune.training.short_attention; ``checkpointed_head``: the frozen LM head's chunks
  recomputed in the backward pass, see ftune.models.lm_head; ``peft_lora_layers``: PEFT's own LoRA
  layers rather than one fused autograd step each, see ftune.training.fused_lora), so the JSON
  says what each bought; ``--levers compile``
  adds ftune with ``torch.compile`` (its compile time is reported apart from the timed steps);
- trl: TRL's SFTTrainer with ``padding_free=True`` (its fastest option on CPU);
- padded: transformers Trainer + PEFT with every row padded to ``max_length`` 512, as many
  tutorials do.

Real (non-pad) tokens per second are measured over the same number of optimizer steps after
a warm-up. The machine's own matmul rate (fp32 and bf16, at the model's shapes) is measured in
the same run, and ``model_flops_utilization`` is the achieved training FLOP/s over the bf16
rate (4 FLOPs per matmul weight per token, see bench/machine.py). The benchmark refuses to
report when other work keeps the CPU busy before or after a child. Prints one JSON object.
Needs ``pip install trl`` (the ``bench`` extra).

    python bench/sft_throughput.py --steps 12 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_2k.jsonl"
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}
WARMUP_STEPS = 2
LEVERS = ("fp32", "unfused_adamw", "eager_attention", "fp32_frozen_weights", "flash_short_rows",
          "checkpointed_head", "peft_lora_layers")  # each undoes one of ftune's defaults
OPTIONAL_LEVERS = ("compile",)  # each adds one

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import TrainedBatches, timed_trainer_callback  # noqa: E402  (bench/steps.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--steps", type=int, default=12, help="timed optimizer steps (after 2 warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rows", type=int, default=400, help="training rows taken from the data")
    parser.add_argument("--levers", default=",".join(LEVERS),
                        help=f"ftune rows with one lever changed: {', '.join(LEVERS + OPTIONAL_LEVERS)}; empty = none")
    parser.add_argument("--allow-shared-cpu", action="store_true",
                        help="measure even when other work keeps the CPU busy (smoke tests; never report such figures)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args)))
        return
    if not Path(args.data).is_file():
        sys.exit(f"{args.data} not found (the shared data sets live in ../shared/data)")
    print(json.dumps(run_parent(args), indent=2))


def run_parent(args) -> dict:
    """Every way in its own child process, the CPU checked quiet around each; the report."""
    from machine import QuietCpu, matmul_rates, utilization

    levers = [lever for lever in args.levers.split(",") if lever]
    unknown = set(levers) - set(LEVERS + OPTIONAL_LEVERS)
    if unknown:
        sys.exit(f"--levers: unknown {', '.join(sorted(unknown))}; choose from {', '.join(LEVERS + OPTIONAL_LEVERS)}")
    quiet = QuietCpu(allow_shared=args.allow_shared_cpu, sample_seconds=0.25 if args.allow_shared_cpu else 2.0)
    quiet.check("before measuring the matmul rate")
    rates = matmul_rates(hidden=576, width=1536)  # SmolLM2-135M's hidden and feed-forward sizes
    results = {}
    for way in ("ftune", *(f"ftune_{lever}" for lever in levers), "trl", "padded"):
        command = [sys.executable, __file__, "--child", way, *sys.argv[1:]]
        print(f"bench: {way} ...", file=sys.stderr, flush=True)
        quiet.check(f"before {way}")
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        if done.returncode != 0:
            sys.exit(f"{way} failed:\n{done.stderr[-3000:]}")
        quiet.check(f"after {way}")
        results[way] = json.loads(done.stdout.strip().splitlines()[-1])
        results[way].update(utilization(results[way]["tokens_per_s"], results[way]["flops_per_token"], rates))
    f, t, p = results["ftune"], results["trl"], results["padded"]
    return {
        "model": args.model, "rows": args.rows, "batch_size": args.batch_size, "timed_steps": args.steps,
        "lora": LORA, "target_modules": "all-linear",
        "ftune_tokens_per_s": f["tokens_per_s"], "trl_tokens_per_s": t["tokens_per_s"],
        "baseline_tokens_per_s": p["tokens_per_s"],
        "speedup": round(f["tokens_per_s"] / p["tokens_per_s"], 3),
        "speedup_vs_trl": round(f["tokens_per_s"] / t["tokens_per_s"], 3),
        "ftune_peak_rss_mb": f["peak_rss_mb"], "trl_peak_rss_mb": t["peak_rss_mb"],
        "baseline_peak_rss_mb": p["peak_rss_mb"],
        "padding_share": {k: v["padding_share"] for k, v in results.items()},
        "ftune_precision": f["precision"],
        "ftune_memory_vs_trl": round(f["peak_rss_mb"] / t["peak_rss_mb"], 3),
        "ftune_memory_vs_baseline": round(f["peak_rss_mb"] / p["peak_rss_mb"], 3),
        "matmul_rates": rates,
        "flops_per_token": f["flops_per_token"],
        "model_flops_utilization": f["model_flops_utilization"],
        "model_flops_utilization_fp32": f["model_flops_utilization_fp32"],
        "utilization": {k: v["model_flops_utilization"] for k, v in results.items()},
        # tokens/s with ftune's defaults over tokens/s with the lever changed: above 1 means the
        # default (bf16, fused AdamW, SDPA) pays; for an added lever (compile), below 1 means it would
        "levers": {way.removeprefix("ftune_"): {
            "tokens_per_s": r["tokens_per_s"], "peak_rss_mb": r["peak_rss_mb"],
            "defaults_speedup": round(f["tokens_per_s"] / r["tokens_per_s"], 3),
            **({"compile_seconds": r["compile_seconds"]} if "compile_seconds" in r else {})}
            for way, r in results.items() if way.startswith("ftune_")},
        "cpu_load_samples": quiet.samples, "cpu_shared_allowed": args.allow_shared_cpu,
    }


def run_child(args) -> dict:
    import torch
    from peft import LoraConfig

    from ftune.data.generative import load_generative_file
    from ftune.models.load import load_causal_lm

    torch.manual_seed(0)
    examples = load_generative_file(args.data).examples[: args.rows]
    total_steps = WARMUP_STEPS + args.steps
    common = dict(per_device_train_batch_size=args.batch_size, max_steps=total_steps, learning_rate=2e-4,
                  logging_steps=1000, save_strategy="no", report_to="none", use_cpu=True,
                  dataloader_num_workers=0, disable_tqdm=True, seed=0)
    lora = LoraConfig(task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules="all-linear")
    lever = args.child.removeprefix("ftune_") if args.child.startswith("ftune_") else None
    task = load_causal_lm(args.model, **({"attn_implementation": "eager"} if lever == "eager_attention" else {}))
    model, tokenizer = task.model, task.tokenizer
    timer = timed_trainer_callback()
    precision = "fp32"

    if args.child.startswith("ftune"):
        trainer, precision = _ftune_trainer(args, examples, task, total_steps, timer, lever)
    elif args.child == "trl":
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        rows = [{"messages": [{"role": m.role, "content": m.content} for m in e.messages]} for e in examples]
        config = SFTConfig(output_dir="/tmp/ftune-bench-trl", padding_free=True, max_length=None,
                           gradient_checkpointing=False, bf16=False, assistant_only_loss=False, **common)
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=lora, callbacks=[timer])
    else:
        from peft import get_peft_model
        from transformers import Trainer, TrainingArguments

        from ftune.data.templates import resolve_template

        template = resolve_template("auto", tokenizer)
        texts = [template.render_text(e.messages) for e in examples]
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=512)
        rows = [{"input_ids": ids, "attention_mask": mask,
                 "labels": [t if m else -100 for t, m in zip(ids, mask)]}
                for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])]
        collator = lambda feats: {k: torch.tensor([f[k] for f in feats]) for k in feats[0]}  # noqa: E731
        trainer = Trainer(model=get_peft_model(model, lora), args=TrainingArguments(output_dir="/tmp/ftune-bench-pad",
                          remove_unused_columns=False, **common), train_dataset=rows, data_collator=collator,
                          callbacks=[timer])
    from machine import matmul_parameters

    flops_per_token = 4 * matmul_parameters(trainer.model)
    trained = TrainedBatches(trainer)
    started = time.perf_counter()
    trainer.train()
    times = timer.times
    seconds = times[-1] - times[WARMUP_STEPS - 1]
    warmup_seconds = times[WARMUP_STEPS - 1] - started
    tokens = sum(trained.real_tokens[WARMUP_STEPS:total_steps])
    padded = sum(trained.all_tokens[WARMUP_STEPS:total_steps])
    return {"tokens_per_s": round(tokens / seconds, 2), "seconds": round(seconds, 2), "real_tokens": tokens,
            "padding_share": round(1 - tokens / padded, 4), "precision": precision,
            "flops_per_token": flops_per_token,
            **({"compile_seconds": round(warmup_seconds, 1)} if lever == "compile" else {}),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _ftune_trainer(args, examples, task, total_steps, timer, lever=None):
    """ftune's own path: its masks, collator, length-grouped sampler, Trainer subclass and
    precision choice, with ``lever`` changed (see LEVERS). Returns (trainer, precision)."""
    from ftune.settings import load_config
    from ftune.data.collate import PaddedCausalCollator
    from ftune.data.templates import resolve_template
    from ftune.methods import build_method
    from ftune.training.loop import PreparedModel, build_trainer
    from ftune.training.device import choose_precision, count_parameters, plan_device
    from ftune.runs.run_dir import RunDir
    from ftune.data.encode import EncodedDataset, encode_examples
    from ftune.training.trainer import ResponseLossTrainer

    config = load_config(None, [f"model={args.model}", "method=lora", f"method.r={LORA['r']}",
                                f"method.alpha={LORA['alpha']}", f"method.dropout={LORA['dropout']}",
                                "method.target_modules=all-linear", f"train.batch_size={args.batch_size}",
                                f"train.max_steps={total_steps}", "train.learning_rate=2e-4", "train.evals_per_epoch=1"],
                         check=False)
    if lever == "fp32_frozen_weights":
        from ftune.training import frozen_weights

        frozen_weights.castable_layers = lambda model: []
    if lever == "flash_short_rows":
        from ftune.training import short_attention

        short_attention.SHORT_ROW_TOKENS = short_attention.CAUSAL_ROW_TOKENS = 0
    if lever == "checkpointed_head":
        from ftune.models import lm_head

        lm_head._frozen_linear_head = lambda head, hidden: False
    if lever == "peft_lora_layers":
        from ftune.training import fused_lora

        fused_lora._fusable = lambda layer: False
    method = build_method("lora", config.method.options)
    model = method.apply(task.model, task)
    trainable, total = count_parameters(model)
    plan = choose_precision(plan_device("cpu", "fp32" if lever == "fp32" else "auto"), model)
    prepared = PreparedModel(task, model, trainable, total, plan)
    template = resolve_template("auto", task.tokenizer)
    items, _ = encode_examples(examples, template, task.tokenizer, 1024)
    collator = PaddedCausalCollator.from_tokenizer(task.tokenizer)
    run = RunDir.create("/tmp/ftune-bench-runs", "bench")
    extra = {"optim": "adamw_torch"} if lever == "unfused_adamw" else {"torch_compile": True} if lever == "compile" else {}
    session = build_trainer(config, method, prepared, EncodedDataset(items), EncodedDataset(items[:8]), collator, run,
                            metric="loss", greater_is_better=False, trainer_class=ResponseLossTrainer, extra_args=extra)
    trainer = session.trainer
    # the memory plan a real run applies (on CPU: micro-batches of at most CPU_PASS_TOKENS tokens)
    from ftune.training.memory_fit import BatchShape, fit_to_memory

    shape = BatchShape([len(item["input_ids"]) for item in items], args.batch_size)
    fit_to_memory(config, trainer, prepared, shape, head="chunked", echo=lambda line: print(line, file=sys.stderr))
    trainer.args.eval_strategy = "no"  # measure training only, as for the other two
    for callback in list(trainer.callback_handler.callbacks):
        if type(callback).__name__ in ("ProgressBar", "StopAndEvaluate", "KeepBest", "StepLog"):
            trainer.remove_callback(callback)
    trainer.add_callback(timer)
    return trainer, plan.precision


if __name__ == "__main__":
    main()
