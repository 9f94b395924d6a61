"""QLoRA: LoRA on a base model held in 4-bit NF4 with double quantization (Dettmers et al., 2023)."""

from __future__ import annotations

from ftune.methods.base import Capabilities, register_method
from ftune.methods.lora import Lora

# Modules that stay in full precision: task heads are trained in full, and tiny or newly
# initialised layers gain nothing from 4 bits.
KEEP_FULL_PRECISION = ["classifier", "score", "pooler", "lm_head"]


def compute_dtype(device: str):
    """bf16 where the GPU has it, fp16 on other GPUs, fp32 on CPU (no fast half matmuls there)."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@register_method("qlora")
class QLora(Lora):
    """LoRA adapters trained through a frozen 4-bit base (bitsandbytes NF4 + double
    quantization). The base takes about a quarter of its fp32 memory; steps are slower on CPU.
    Ships the adapter; reloading quantizes the base again so outputs match training."""

    capabilities = Capabilities(mergeable=False, generation=True, classification=True, quantized_base=True)

    def model_load_options(self, device: str) -> dict:
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype(device), llm_int8_skip_modules=KEEP_FULL_PRECISION)}

    def apply(self, model, task):
        keep_cpu_weights_trainable(model)
        return super().apply(model, task)

    def load(self, directory, base_loader, task: str = "classification"):
        def quantized_base(**options):
            base = base_loader(**options)
            keep_cpu_weights_trainable(base)  # the same matmul path as in training
            return base

        return super().load(directory, quantized_base, task)


def keep_cpu_weights_trainable(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference.

    After an eval-mode forward pass on a CPU with AVX512-BF16 it converts the weights to an
    inference layout, and later backward passes give silently wrong gradients (see
    ../shared/NOTES.md). Evaluation between epochs would corrupt training; with this flag off
    every pass uses the training layout.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
