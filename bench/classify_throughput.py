"""Classification throughput: ftune vs the common tutorial recipe, training and prediction.

Fine-tunes MiniLM (``minilm-l6``) with LoRA (r 16, alpha 32, dropout 0.05, on the attention
linear layers: query, key, value, attention.output.dense) on the same SST-2 rows, two ways,
each in its own process so peak memory is its own:

- ftune: ftune's own classification path (its config, ``prepare_model`` with the precision
  ``plan_device`` / ``choose_precision`` pick, dynamic padding over length-grouped batches,
  ``build_trainer``'s Trainer); then ftune's batched prediction (``predict_probabilities``,
  what ``ftune eval`` and ``ftune predict`` run) on the held-out rows;
- plain: ``AutoModelForSequenceClassification`` + PEFT ``get_peft_model`` + ``Trainer`` with
  default arguments, every row padded to ``max_length`` 128 as tutorials do; then
  ``transformers.pipeline("text-classification")`` on the same held-out rows, with its default
  batch size and with ``batch_size=64``.

Examples/s (and real, non-pad tokens/s) are measured over the same number of optimizer steps
after warm-up steps; prediction examples/s over the same held-out rows (the next
``--eval-rows`` after the training rows). The machine's matmul rates, each model's matmul
weights and the model-FLOPs utilisation come from ``bench/machine.py``, and the run refuses to
report while other work keeps the CPU busy. Prints one JSON object.

    python bench/classify_throughput.py            # 2000 rows, 30 timed steps, batch 16

``--allow-shared-cpu`` skips that refusal (the samples are still recorded, and the JSON says
``"cpu_shared_allowed": true``). It exists for the tests: figures measured with it must never
be reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from steps import TrainedBatches, timed_trainer_callback  # noqa: E402  (bench/steps.py)
DATA = BENCH.parents[1] / "shared" / "data" / "sst2" / "train.tsv"
MODEL = "minilm-l6"
HIDDEN, WIDTH = 384, 1536  # MiniLM-L6's hidden size and feed-forward width, for the matmul rates
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
ATTENTION_LAYERS = ["query", "key", "value", "attention.output.dense"]  # BERT's attention linear layers
MAX_LENGTH = 128
PIPELINE_BATCH = 64
RUNS = Path(tempfile.gettempdir()) / "ftune-bench-runs"
WAYS = ("ftune", "plain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="SST-2 train.tsv (sentence<TAB>label, with a header)")
    parser.add_argument("--rows", type=int, default=2000, help="training rows taken from the data")
    parser.add_argument("--eval-rows", type=int, default=1000, help="held-out rows (after the training rows) to predict")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps, after the warm-up steps")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed optimizer steps first (at least 1)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="ftune's train.precision (the plain recipe trains in fp32, Trainer's default)")
    parser.add_argument("--allow-shared-cpu", action="store_true",
                        help="measure even while other work keeps the CPU busy (for tests only: never report "
                             "figures measured with it)")
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.rows, args.eval_rows, args.steps, args.warmup_steps, args.batch_size) < 1:
        parser.error("--rows, --eval-rows, --steps, --warmup-steps and --batch-size must be at least 1")
    if not Path(args.data).is_file():
        sys.exit(f"{args.data} not found: this benchmark needs SST-2's train.tsv (the shared data sets live in "
                 "../shared/data next to the repository); pass --data PATH")
    if args.child:
        print(json.dumps(run_child(args)))
        return
    print(json.dumps(run_parent(args), indent=2))


def run_parent(args) -> dict:
    sys.path.insert(0, str(BENCH))
    from machine import QuietCpu, matmul_rates, utilization

    # samples recorded either way; short ones when they cannot refuse
    quiet = QuietCpu(allow_shared=args.allow_shared_cpu, sample_seconds=0.25 if args.allow_shared_cpu else 2.0)
    quiet.check("before matmul rates")
    rates = matmul_rates(hidden=HIDDEN, width=WIDTH)
    results = {}
    for way in WAYS:
        quiet.check(f"before {way}")
        print(f"bench: {way} ...", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--child", way, *sys.argv[1:]]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        env.setdefault("HF_HUB_OFFLINE", "1")
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"{way} failed:\n{done.stderr[-3000:]}")
        results[way] = json.loads(done.stdout.strip().splitlines()[-1])
        quiet.check(f"after {way}")
    f, p = results["ftune"], results["plain"]
    if f["lora_targets"] != p["lora_targets"]:
        sys.exit(f"the two ways put LoRA on different layers: ftune {f['lora_targets']}, plain {p['lora_targets']}")
    out = {
        "model": MODEL, "data": str(args.data), "rows": args.rows, "eval_rows": args.eval_rows,
        "batch_size": args.batch_size, "timed_steps": args.steps, "warmup_steps": args.warmup_steps,
        "lora": {**LORA, "target_modules": ATTENTION_LAYERS}, "lora_targets": f["lora_targets"],
        "ftune_train_examples_per_s": f["examples_per_s"], "plain_train_examples_per_s": p["examples_per_s"],
        "train_speedup": round(f["examples_per_s"] / p["examples_per_s"], 3),
        "ftune_train_tokens_per_s": f["tokens_per_s"], "plain_train_tokens_per_s": p["tokens_per_s"],
        "ftune_train_seconds": f["seconds"], "plain_train_seconds": p["seconds"],
        "ftune_real_tokens_per_example": f["real_tokens_per_example"],
        "plain_real_tokens_per_example": p["real_tokens_per_example"],
        "ftune_padding_share": f["padding_share"], "plain_padding_share": p["padding_share"],
        "ftune_precision": f["precision"], "ftune_precision_reason": f["precision_reason"],
        "plain_precision": p["precision"],
        "ftune_peak_rss_mb": f["peak_rss_mb"], "plain_peak_rss_mb": p["peak_rss_mb"],
        "ftune_trainable_parameters": f["trainable_parameters"], "plain_trainable_parameters": p["trainable_parameters"],
        "ftune_matmul_parameters": f["matmul_parameters"], "plain_matmul_parameters": p["matmul_parameters"],
        "ftune_eval_examples_per_s": f["eval_examples_per_s"], "ftune_eval_batch_size": f["eval_batch_size"],
        "ftune_eval_seconds": f["eval_seconds"],
        "pipeline_eval_examples_per_s": p["eval_examples_per_s"],
        "pipeline_eval_seconds": p["eval_seconds"],
        "pipeline_batched_eval_examples_per_s": p["batched_eval_examples_per_s"],
        "pipeline_batched_batch_size": PIPELINE_BATCH,
        "pipeline_batched_eval_seconds": p["batched_eval_seconds"],
        "eval_speedup": round(f["eval_examples_per_s"] / p["eval_examples_per_s"], 3),
        "eval_speedup_vs_batched_pipeline": round(f["eval_examples_per_s"] / p["batched_eval_examples_per_s"], 3),
        "matmul_rates": rates,
    }
    for way, result in results.items():
        # a LoRA step multiplies each token by every linear weight about 4 times (forward, and
        # backward to the inputs); on real tokens, so a padded batch's wasted work does not count
        used = utilization(result["tokens_per_s"], 4 * result["matmul_parameters"], rates)
        out[f"{way}_achieved_gflops"] = used["achieved_gflops"]
        out[f"{way}_model_flops_utilization"] = used["model_flops_utilization"]
        out[f"{way}_model_flops_utilization_fp32"] = used["model_flops_utilization_fp32"]
    out["cpu_load_samples"] = quiet.samples
    out["cpu_shared_allowed"] = bool(args.allow_shared_cpu)
    return out


def load_rows(args):
    """The training rows and the held-out rows after them, read by ftune's reader (both ways
    get exactly these), with the label names in ftune's order."""
    from ftune.data.classification import load_labeled_file
    from ftune.data.prepare import _sorted_labels

    data = load_labeled_file(args.data, text_columns=["sentence"], label_column="label")
    if len(data.texts) < args.rows + args.eval_rows:
        sys.exit(f"{args.data}: {len(data.texts):,} usable rows, fewer than --rows {args.rows} + "
                 f"--eval-rows {args.eval_rows}")
    label_names = _sorted_labels(data.labels)
    ids = {name: i for i, name in enumerate(label_names)}
    label_ids = [ids[label] for label in data.labels]
    end = args.rows + args.eval_rows
    train = SimpleNamespace(texts=data.texts[: args.rows], label_ids=label_ids[: args.rows])
    held_out = SimpleNamespace(texts=data.texts[args.rows:end], label_ids=label_ids[args.rows:end])
    return train, held_out, label_names


def run_child(args) -> dict:
    import torch

    sys.path.insert(0, str(BENCH))
    from machine import matmul_parameters

    torch.manual_seed(0)
    train, held_out, label_names = load_rows(args)
    total_steps = args.warmup_steps + args.steps
    timer = timed_trainer_callback()
    RUNS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{args.child}-", dir=RUNS))
    try:
        if args.child == "ftune":
            result = _ftune(args, train, held_out, label_names, total_steps, timer, scratch)
        else:
            result = _plain(args, train, held_out, label_names, total_steps, timer, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    trained, model = result.pop("trained"), result.pop("model")
    times = timer.times
    if len(times) < total_steps:
        sys.exit(f"{args.child}: {len(times)} optimizer steps ran, {total_steps} were asked for")
    seconds = times[total_steps - 1] - times[args.warmup_steps - 1]
    timed = slice(args.warmup_steps, total_steps)
    examples = sum(trained.examples[timed])
    tokens = sum(trained.real_tokens[timed])
    padded = sum(trained.all_tokens[timed])
    return {
        "examples_per_s": round(examples / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
        "seconds": round(seconds, 3), "examples": examples, "real_tokens": tokens,
        "real_tokens_per_example": round(tokens / examples, 2), "padding_share": round(1 - tokens / padded, 4),
        "matmul_parameters": matmul_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "lora_targets": lora_targets(model),
        **result,
    }


def lora_targets(model) -> list[str]:
    """The layers LoRA wraps, by their name inside a transformer block (attention.self.query, ...)."""
    return sorted({name.split(".layer.", 1)[-1].split(".", 1)[-1]
                   for name, module in model.named_modules() if hasattr(module, "lora_A")})


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _ftune(args, train, held_out, label_names, total_steps, timer, scratch: Path) -> dict:
    """ftune's own path: its config, model preparation (device and precision plan), LoRA
    method, tokenized dataset, dynamic-padding collator, length-grouped Trainer; then its
    batched prediction, as ``ftune eval`` / ``ftune predict`` run it."""
    from transformers import DataCollatorWithPadding

    from ftune.eval.classifier import predict_probabilities
    from ftune.methods import build_method
    from ftune.models.load import load_classifier
    from ftune.recipes.classify import TokenizedExamples, _training_metrics
    from ftune.runs.run_dir import RunDir
    from ftune.settings import load_config
    from ftune.training import loop
    from ftune.training.loop import build_trainer, prepare_model

    config = load_config(None, [f"model={MODEL}", f"model.max_length={MAX_LENGTH}", "method=lora",
                                f"method.r={LORA['r']}", f"method.alpha={LORA['alpha']}",
                                f"method.dropout={LORA['dropout']}", "method.target_modules=attention",
                                f"train.batch_size={args.batch_size}", f"train.max_steps={total_steps}",
                                "train.device=cpu", f"train.precision={args.precision}",
                                "train.checkpoint_every=off", "train.evals_per_epoch=1"], check=False)
    method = build_method("lora", config.method.options)
    # prepare_model: plan_device("cpu", precision), then (auto on a CPU) choose_precision at the
    # model's shapes, as `ftune train` does
    prepared = prepare_model(config, method, lambda **options: load_classifier(MODEL, label_names, **options),
                             echo=lambda line: print(line, file=sys.stderr))
    tokenizer = prepared.task.tokenizer
    collator = DataCollatorWithPadding(tokenizer)
    run = RunDir.create(scratch, "bench")
    session = build_trainer(config, method, prepared, TokenizedExamples(tokenizer, train, MAX_LENGTH),
                            TokenizedExamples(tokenizer, SimpleNamespace(texts=held_out.texts[:8],
                                                                         label_ids=held_out.label_ids[:8]), MAX_LENGTH),
                            collator, run, metric=config.train.metric, compute_metrics=_training_metrics)
    trainer = session.trainer
    trainer.args.eval_strategy = "no"  # measure training only, as for the plain way
    for callback in list(trainer.callback_handler.callbacks):
        if type(callback).__name__ in ("ProgressBar", "StopAndEvaluate", "KeepBest", "StepLog", "CheckpointEvery"):
            trainer.remove_callback(callback)
    trainer.add_callback(timer)
    trained = TrainedBatches(trainer)
    try:
        trainer.train()
    finally:
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    peak = _rss_mb()
    model = trainer.model
    # after training ftune drops accelerate's autocast wrapper: a saved run predicts in fp32
    drop = getattr(loop, "_drop_autocast_wrapper", None)
    if drop is not None:
        drop(model)

    batch = config.train.eval_batch_size
    texts = held_out.texts

    def predict(chosen):
        return predict_probabilities(model, tokenizer, chosen, MAX_LENGTH, batch)

    predict(texts[:batch])  # warm-up
    seconds = _timed(lambda: predict(texts))
    return {"trained": trained, "model": model, "peak_rss_mb": peak,
            "precision": prepared.plan.precision, "precision_reason": getattr(prepared.plan, "reason", ""),
            "eval_batch_size": batch,
            "eval_examples_per_s": round(len(texts) / seconds, 2), "eval_seconds": round(seconds, 3)}


def _plain(args, train, held_out, label_names, total_steps, timer, scratch: Path) -> dict:
    """The tutorial recipe: padding="max_length", PEFT's get_peft_model, default Trainer
    arguments (fp32 on a CPU); then a text-classification pipeline."""
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, pipeline

    from ftune.models.load import resolve_model_dir

    model_dir = resolve_model_dir(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    id2label = dict(enumerate(label_names))
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(label_names), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=LORA["r"], lora_alpha=LORA["alpha"],
                      lora_dropout=LORA["dropout"], target_modules=ATTENTION_LAYERS)
    model = get_peft_model(model, lora)
    dataset = Dataset.from_dict({"sentence": train.texts, "label": train.label_ids}).map(
        lambda rows: tokenizer(rows["sentence"], padding="max_length", truncation=True, max_length=MAX_LENGTH),
        batched=True)
    training_args = TrainingArguments(output_dir=str(scratch / "trainer"), max_steps=total_steps,
                                      per_device_train_batch_size=args.batch_size, use_cpu=True,
                                      report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
                      callbacks=[timer])
    trained = TrainedBatches(trainer)
    trainer.train()
    peak = _rss_mb()
    model = trainer.model
    model.eval()

    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    texts = held_out.texts
    classify(texts[:PIPELINE_BATCH], batch_size=PIPELINE_BATCH)  # warm-up
    seconds = _timed(lambda: classify(texts))
    batched = _timed(lambda: classify(texts, batch_size=PIPELINE_BATCH))
    return {"trained": trained, "model": model, "peak_rss_mb": peak,
            "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
            "eval_examples_per_s": round(len(texts) / seconds, 2), "eval_seconds": round(seconds, 3),
            "batched_eval_examples_per_s": round(len(texts) / batched, 2), "batched_eval_seconds": round(batched, 3)}


if __name__ == "__main__":
    main()
