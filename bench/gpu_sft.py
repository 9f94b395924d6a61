"""SFT on an NVIDIA GPU: LoRA and QLoRA, real tokens/s, peak GPU memory and model-FLOPs utilisation.

Fine-tunes SmolLM2-135M (``smollm2-135m``, loaded by ``ftune.models.load.load_causal_lm``,
which converts the packaged GGUF to safetensors once, offline) on Alpaca rows, once per
technique, each in its own child process so its peak GPU memory is its own:

- lora: the base in fp32 master weights, run under bf16 autocast (``TrainingArguments``
  ``bf16=True``), with LoRA r 16, alpha 32, dropout 0, on every linear layer of the blocks
  (ftune's ``lora`` technique, ``target_modules=all-linear``; the tied LM head stays frozen);
- qlora: the same LoRA on a base quantized to 4-bit NF4 by bitsandbytes,
  ``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
  bnb_4bit_compute_dtype=torch.bfloat16)`` (no double quantization, unlike ``ftune train
  method=qlora``), loaded straight onto GPU 0, plus the same bf16 autocast.

Both train with learning rate 2e-4, the rows in file order (``train_sampling_strategy=
"sequential"``, so both techniques see the same batches) and:

- padding-free batches: ``ftune.data.collate.PaddingFreeCollator`` packs the ``--batch-size``
  rows of a step into one row with ``position_ids`` restarting at 0 for every sequence (and the
  first label of each sequence -100), no attention mask and no pad token; transformers keeps
  the sequences apart from the position ids (``use_cache=False``, sdpa or eager attention);
- ``ftune.training.trainer.ResponseLossTrainer``: its loss (``ftune.models.lm_head.
  shifted_token_logps``) runs the model with the LM head swapped for ``nn.Identity``, so the
  forward returns final hidden states; it keeps only the positions whose next token is trained
  (label not -100: the replies), applies the LM head to those in chunks of 512 tokens, each
  chunk computing fp32 logits, ``log_softmax`` and the target's log-probability under
  ``torch.utils.checkpoint`` (recomputed in the backward pass), so at most one 512 x 49,152
  chunk of logits is alive and none is built for prompt tokens. The loss is minus the summed
  log-probabilities over the trained tokens divided by their number. This is the "fused"
  cross-entropy of this benchmark: a chunked, checkpointed PyTorch computation, not a fused
  kernel (no Triton/Liger linear-cross-entropy); logits still exist, one chunk at a time.

Measured per technique, over ``--steps`` optimizer steps after ``--warmup-steps`` (step ends
timed after ``torch.cuda.synchronize``): real tokens/s (padding-free: every token is real),
peak ``torch.cuda.max_memory_allocated`` in MB (loading included; the training phase alone
beside it) and model-FLOPs utilisation. FLOPs per token are 4 x ``bench/machine.py``'s
``matmul_parameters`` (forward, and backward to the inputs; frozen weights get no weight
gradient), LoRA's own weights and the tied LM head included, attention's own score/value
products not. For QLoRA the count comes from the same model built on the meta device (a 4-bit
layer's ``weight`` holds packed bytes, half its element count), so both techniques have the
same FLOPs per token. The head is counted at every token, as model FLOPs conventionally are,
although ResponseLossTrainer applies it only at trained tokens (``trained_token_share`` is
reported) and recomputes it in the backward pass.

Utilisation is reported against two bf16 rates: the GPU's dense bf16 datasheet peak, looked
up by device name in ``BF16_PEAK_TFLOPS`` (``--peak-tflops`` overrides; an unknown GPU gets
``null``), and a bf16 ``torch.mm`` of 8192 x 8192 x 8192 measured on the GPU in the same run
(the best of a few timings), which is what the GPU reaches today.

    python bench/gpu_sft.py                      # 400 rows, 3 warm-up + 20 timed steps, 16 rows a step
    python bench/gpu_sft.py --techniques qlora --batch-size 32 --peak-tflops 989
    python bench/gpu_sft.py --dry-run            # the plan as JSON; no GPU, no model

Without a CUDA GPU visible to torch it exits non-zero, unless ``--dry-run`` is given. Prints
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_2k.jsonl"
TECHNIQUES = ("lora", "qlora")
LORA = {"r": 16, "alpha": 32.0, "dropout": 0.0, "target_modules": "all-linear"}
LEARNING_RATE = 2e-4
MAX_LENGTH = 1024  # tokens per row after the chat template; longer rows are truncated
# bitsandbytes settings for qlora; the compute dtype is named here and becomes torch.bfloat16
QUANTIZATION = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "bfloat16"}
MATMUL_SIZE = 8192  # the measured rate: a bf16 (n x n) @ (n x n)
NO_CUDA = "bench/gpu_sft.py needs a CUDA GPU; none is visible to torch here (--dry-run prints the plan without one)"

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' datasheets, matched
# against torch.cuda.get_device_name() in order (case-insensitive). GeForce cards: with fp32
# accumulation, as training uses. Variants not listed (H100 NVL, RTX 3090 Ti, ...) are unknown.
BF16_PEAK_TFLOPS: list[tuple[str, str, float]] = [
    ("H100 PCIe", r"\bH100\b.*\bPCIe\b", 756.0),
    ("H100 SXM", r"\bH100\b(?!.*\b(PCIe|NVL)\b)", 989.0),
    ("H200 SXM", r"\bH200\b(?!.*\bNVL\b)", 989.0),
    ("A100", r"\bA100\b", 312.0),
    ("L40S", r"\bL40S\b", 362.0),
    ("L4", r"\bL4\b", 121.0),
    ("A10G", r"\bA10G\b", 125.0),
    ("RTX 4090", r"\bRTX 4090\b(?!\s*(Ti|D)\b)", 165.0),
    ("RTX 3090", r"\bRTX 3090\b(?!\s*Ti\b)", 71.0),
]


def gpu_peak_tflops(device_name: str, override: float | None = None) -> dict:
    """The dense bf16 peak to measure utilisation against: ``{"tflops": value or None,
    "source": why}``. ``override`` (``--peak-tflops``) wins; an unlisted GPU gets None."""
    if override is not None:
        return {"tflops": float(override), "source": "--peak-tflops"}
    for label, pattern, tflops in BF16_PEAK_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return {"tflops": tflops, "source": f"datasheet table: {label}"}
    return {"tflops": None, "source": f"{device_name!r} is not in the table; pass --peak-tflops for a "
                                      "datasheet figure (utilisation against the measured rate is still reported)"}


def utilization(tokens_per_s: float, flops_per_token: float, peak_tflops: float | None,
                measured_tflops: float | None) -> dict:
    """Achieved TFLOP/s and its share of the datasheet peak and of the measured matmul rate
    (None where that rate is unknown)."""
    achieved = tokens_per_s * flops_per_token / 1e12

    def share(rate):
        return round(achieved / rate, 4) if rate else None

    return {"achieved_tflops": round(achieved, 3), "mfu_vs_peak": share(peak_tflops),
            "mfu_vs_measured_matmul": share(measured_tflops)}


def training_arguments(args) -> dict:
    """TrainingArguments for a technique's child, except ``output_dir`` (a temporary folder)."""
    return {
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": 1,
        "max_steps": args.warmup_steps + args.steps,
        "learning_rate": LEARNING_RATE,
        "bf16": True,
        "fp16": False,
        "activation_checkpointing": False,
        "use_cache": False,  # the padding-free collator needs it (see PaddingFreeCollator)
        "train_sampling_strategy": "sequential",
        "logging_steps": 1000,  # no per-step loss logging (each would synchronise)
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "disable_tqdm": True,
        "seed": 0,
    }


def child_command(args, child: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", child, "--model", args.model,
            "--data", str(args.data), "--rows", str(args.rows), "--steps", str(args.steps),
            "--warmup-steps", str(args.warmup_steps), "--batch-size", str(args.batch_size)]


def plan(args, techniques: list[str]) -> dict:
    """What a run does, without torch: the children, their settings."""
    return {
        "dry_run": True,
        "model": args.model, "data": str(args.data), "data_exists": Path(args.data).is_file(),
        "rows": args.rows, "batch_size": args.batch_size, "max_length": MAX_LENGTH,
        "warmup_steps": args.warmup_steps, "timed_steps": args.steps,
        "precision": "bf16", "padding_free": True,
        "collator": "ftune.data.collate.PaddingFreeCollator",
        "trainer": "ftune.training.trainer.ResponseLossTrainer",
        "loss": "LM head applied only at trained positions, in checkpointed chunks of 512 tokens "
                "(ftune.models.lm_head.shifted_token_logps)",
        "matmul_measurement": {"command": child_command(args, "matmul"), "shape": [MATMUL_SIZE] * 3,
                               "dtype": "bfloat16"},
        "peak_tflops_override": args.peak_tflops,
        "techniques": {
            way: {"command": child_command(args, way), "lora": LORA,
                  "quantization": dict(QUANTIZATION) if way == "qlora" else None,
                  "training_arguments": training_arguments(args)}
            for way in techniques
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=str(DATA), help="Alpaca-style rows (default ../shared/data/alpaca)")
    parser.add_argument("--rows", type=int, default=400, help="training rows taken from the data")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps (after the warm-up steps)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed optimizer steps first (at least 1)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="rows per optimizer step, packed padding-free into one sequence "
                             "(tokens per step vary with the rows; their mean is reported)")
    parser.add_argument("--techniques", default=",".join(TECHNIQUES), help="comma-separated: lora, qlora")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (TFLOP/s), instead of the table")
    parser.add_argument("--dry-run", action="store_true", help="print the plan as JSON; needs no GPU, loads no model")
    parser.add_argument("--child", choices=["matmul", *TECHNIQUES], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup_steps < 1 or args.steps < 1 or args.batch_size < 1 or args.rows < 1:
        parser.error("--warmup-steps, --steps, --batch-size and --rows must be at least 1")
    techniques = [t.strip() for t in args.techniques.split(",") if t.strip()]
    unknown = [t for t in techniques if t not in TECHNIQUES]
    if unknown or not techniques:
        parser.error(f"--techniques {args.techniques!r}: choose from {', '.join(TECHNIQUES)}")
    if args.child:
        result = measure_matmul() if args.child == "matmul" else run_child(args)
        print(json.dumps(result))
        return
    if args.dry_run:
        print(json.dumps(plan(args, techniques), indent=2))
        return

    import torch

    if not torch.cuda.is_available():
        sys.exit(NO_CUDA)
    if not Path(args.data).is_file():
        sys.exit(f"{args.data} not found (the shared data sets live in ../shared/data)")
    gpu = _child(args, "matmul")
    if not gpu["bf16_supported"]:
        sys.exit(f"{gpu['device_name']} has no bf16; this benchmark trains in bf16")
    peak = gpu_peak_tflops(gpu["device_name"], args.peak_tflops)
    results = {}
    for way in techniques:
        result = _child(args, way)
        result.update(utilization(result["tokens_per_s"], result["flops_per_token"], peak["tflops"],
                                  gpu["measured_bf16_tflops"]))
        results[way] = result
    print(json.dumps({
        "model": args.model, "gpu": gpu["device_name"], "torch": gpu["torch"], "cuda": gpu["cuda"],
        "rows": args.rows, "batch_size": args.batch_size, "warmup_steps": args.warmup_steps,
        "timed_steps": args.steps, "precision": "bf16", "padding_free": True, "lora": LORA,
        "learning_rate": LEARNING_RATE, "qlora_quantization": QUANTIZATION,
        "peak_bf16_tflops": peak["tflops"], "peak_source": peak["source"],
        "measured_bf16_matmul_tflops": gpu["measured_bf16_tflops"], "matmul_shape": gpu["shape"],
        "results": results,
    }, indent=2))


def _child(args, child: str) -> dict:
    print(f"bench: {child} ...", file=sys.stderr, flush=True)
    done = subprocess.run(child_command(args, child), capture_output=True, text=True,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if done.returncode != 0:
        sys.exit(f"{child} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_matmul(size: int = MATMUL_SIZE, timings: int = 5, repeats: int = 4) -> dict:
    """bf16 ``torch.mm`` TFLOP/s on GPU 0: the best of ``timings`` timings of ``repeats`` products."""
    import torch

    a = torch.randn(size, size, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(size, size, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):  # warm-up: the first calls pick kernels
        torch.mm(a, b)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(timings):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / repeats)
    return {"device_name": torch.cuda.get_device_name(0), "bf16_supported": torch.cuda.is_bf16_supported(),
            "measured_bf16_tflops": round(2 * size ** 3 / best / 1e12, 1), "shape": [size] * 3,
            "torch": torch.__version__, "cuda": torch.version.cuda}


class CountingCollator:
    """Wraps the collator and records each batch's tokens and trained (scored) tokens."""

    def __init__(self, inner):
        self.inner = inner
        self.tokens: list[int] = []
        self.trained: list[int] = []

    def __call__(self, features):
        batch = self.inner(features)
        self.tokens.append(batch["input_ids"].numel())  # padding-free: all real
        self.trained.append(int((batch["labels"][:, 1:] != -100).sum()))
        return batch


def run_child(args) -> dict:
    import torch
    from transformers import BitsAndBytesConfig, TrainerCallback, TrainingArguments

    sys.path.insert(0, str(BENCH))
    from machine import matmul_parameters

    from ftune.data.collate import PaddingFreeCollator
    from ftune.data.encode import EncodedDataset, encode_examples
    from ftune.data.generative import load_generative_file
    from ftune.data.templates import resolve_template
    from ftune.methods import build_method
    from ftune.models.load import load_causal_lm
    from ftune.training.device import count_parameters
    from ftune.training.trainer import ResponseLossTrainer

    if not torch.cuda.is_available():
        sys.exit(NO_CUDA)

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    torch.manual_seed(0)
    way = args.child
    options = {}
    if way == "qlora":
        quantization = dict(QUANTIZATION, bnb_4bit_compute_dtype=getattr(torch, QUANTIZATION["bnb_4bit_compute_dtype"]))
        options = {"quantization_config": BitsAndBytesConfig(**quantization), "device_map": {"": 0}}
    task = load_causal_lm(args.model, **options)
    method = build_method(way, dict(LORA))  # qlora: ftune's LoRA on the 4-bit base
    model = method.apply(task.model, task)
    trainable, total = count_parameters(model)
    matmuls = matmul_parameters(model) if way == "lora" else _unquantized_matmul_parameters(args.model)

    template = resolve_template("auto", task.tokenizer)
    examples = load_generative_file(args.data).examples[: args.rows]
    items, truncated = encode_examples(examples, template, task.tokenizer, MAX_LENGTH)
    collator = CountingCollator(PaddingFreeCollator())
    timer = StepTimes()
    output_dir = tempfile.mkdtemp(prefix=f"ftune-gpu-sft-{way}-")
    trainer = ResponseLossTrainer(model=model, args=TrainingArguments(output_dir=output_dir, **training_arguments(args)),
                                  train_dataset=EncodedDataset(items), data_collator=collator, callbacks=[timer])
    load_peak = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    output = trainer.train()
    train_peak = torch.cuda.max_memory_allocated()

    warmup, total_steps = args.warmup_steps, args.warmup_steps + args.steps
    if len(timer.times) < total_steps or len(collator.tokens) < total_steps:
        sys.exit(f"{way}: {len(timer.times)} steps timed, {len(collator.tokens)} batches built; expected {total_steps}")
    seconds = timer.times[total_steps - 1] - timer.times[warmup - 1]
    tokens = sum(collator.tokens[warmup:total_steps])
    trained = sum(collator.trained[warmup:total_steps])
    return {
        "tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 3), "real_tokens": tokens,
        "tokens_per_step_mean": round(tokens / args.steps, 1), "trained_token_share": round(trained / tokens, 4),
        "peak_gpu_memory_mb": round(max(load_peak, train_peak) / 2**20, 1),
        "peak_gpu_memory_training_mb": round(train_peak / 2**20, 1),
        "matmul_parameters": matmuls, "flops_per_token": 4 * matmuls,
        "trainable_parameters": trainable, "total_parameters": total,
        "rows_encoded": len(items), "rows_truncated": truncated,
        "mean_training_loss": round(float(output.training_loss), 4),
        "attn_implementation": getattr(task.model.config, "_attn_implementation", None),
        "optim": str(trainer.args.optim), "bf16": trainer.args.bf16,
        "quantization": QUANTIZATION if way == "qlora" else None,
    }


def _unquantized_matmul_parameters(model_name: str) -> int:
    """``matmul_parameters`` of the model with the same adapters, built on the meta device (no
    memory, no weights): a 4-bit layer's own ``weight`` counts packed bytes, not its elements."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sys.path.insert(0, str(BENCH))
    from machine import matmul_parameters

    from ftune.methods import build_method
    from ftune.models.load import resolve_model_dir
    from ftune.models.task import TaskModel

    config = AutoConfig.from_pretrained(resolve_model_dir(model_name))
    with torch.device("meta"):
        twin = AutoModelForCausalLM.from_config(config)
    twin_task = TaskModel(model=twin, tokenizer=None, kind="decoder", head_modules=[], task="causal_lm")
    return matmul_parameters(build_method("lora", dict(LORA)).apply(twin, twin_task))


if __name__ == "__main__":
    main()
