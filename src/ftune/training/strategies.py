"""How ``train.processes`` > 1 share the model (``train.distributed``), as settings for the
engines that do the work; ftune writes none of the sharding itself.

- ``ddp``: every process holds the whole model; PyTorch DDP averages the gradients.
- ``fsdp``: PyTorch FSDP2 shards parameters, gradients and optimizer state over the processes,
  wrapping each transformer layer (the model's own ``_no_split_modules``).
- ``deepspeed-zero2``: DeepSpeed ZeRO stage 2 shards optimizer state and gradients.
- ``deepspeed-zero3``: ZeRO stage 3 shards the parameters too.

transformers' Trainer reads these settings (``fsdp`` / ``fsdp_config`` and ``deepspeed``);
values left ``"auto"`` in a DeepSpeed config are filled from ftune's own settings (batch,
accumulation, precision, clipping). The same settings ship as files in
``configs/distributed/`` for a user's own ``accelerate launch``; a test keeps them equal to
what this module generates. FSDP and DeepSpeed need CUDA GPUs (NCCL).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

STRATEGIES = ("ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3")
# Where no process holds the whole model after training: it is gathered for the main process.
SHARDS_PARAMETERS = ("fsdp", "deepspeed-zero3")

_DEEPSPEED_COMMON = {
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto"},
}


def strategy_settings(strategy: str) -> dict[str, Any] | None:
    """The engine's settings for ``strategy`` (None for ddp, which needs none)."""
    if strategy == "fsdp":
        return {"version": 2, "reshard_after_forward": True, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False,
                "activation_checkpointing": False}
    if strategy == "deepspeed-zero2":
        return {**_DEEPSPEED_COMMON, "zero_optimization": {
            "stage": 2, "overlap_comm": True, "contiguous_gradients": True,
            "reduce_bucket_size": "auto", "allgather_bucket_size": 5e8}}
    if strategy == "deepspeed-zero3":
        return {**_DEEPSPEED_COMMON, "zero_optimization": {
            "stage": 3, "overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
            # the finished model is gathered whole (16-bit) for the main process to evaluate and save
            "stage3_gather_16bit_weights_on_model_save": True}}
    return None


def settings_file_name(strategy: str) -> str | None:
    return None if strategy == "ddp" else f"{strategy}.json"


def write_settings(strategy: str, directory: Path) -> Path | None:
    """``<directory>/<strategy>.json``, for ``accelerate launch`` or the Trainer; None for ddp."""
    settings = strategy_settings(strategy)
    if settings is None:
        return None
    path = Path(directory) / settings_file_name(strategy)
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


def trainer_arguments(strategy: str) -> dict[str, Any]:
    """TrainingArguments for ``strategy``."""
    settings = strategy_settings(strategy)
    if strategy == "fsdp":
        return {"fsdp": True, "fsdp_config": settings}
    if strategy.startswith("deepspeed"):
        return {"deepspeed": settings}
    return {}


def strategy_problems(strategy: str, device: str, method: str) -> list[str]:
    """What makes ``strategy`` impossible here, each naming the setting."""
    if strategy == "ddp":
        return []
    key = f"train.distributed = {strategy}"
    if device != "cuda":
        return [f"{key}: FSDP and DeepSpeed shard the model over CUDA GPUs (NCCL); on {device} use "
                "train.distributed=ddp"]
    problems = []
    if strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        problems.append(f"{key}: DeepSpeed is not installed (pip install deepspeed), or use fsdp or ddp")
    if method == "qlora" and strategy in SHARDS_PARAMETERS:
        problems.append(f"{key}: a 4-bit QLoRA base cannot be sharded by the versions ftune runs on "
                        "(bitsandbytes' 4-bit weights are not FSDP / ZeRO-3 parameters); use ddp or deepspeed-zero2")
    return problems
