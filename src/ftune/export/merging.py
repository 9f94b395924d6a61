"""One standalone model from a run: adapters folded into the base weights (a 4-bit QLoRA base
dequantized first, so nothing is merged into 4-bit), in the chosen dtype."""

from __future__ import annotations

from ftune.export.finished_run import FinishedRun

DTYPES = ("fp32", "bf16", "fp16")


def can_merge(method) -> bool:
    """Techniques with a standalone merged form: those whose added weights fold into the base,
    QLoRA (into its dequantized base), and those that train the model's own weights."""
    return method.capabilities.mergeable or method.capabilities.quantized_base or not method.saves_adapter


def merged_model(run: FinishedRun, dtype: str = "fp32"):
    """The run's model as plain transformers modules (no PEFT, no bitsandbytes), in eval mode."""
    import torch

    if run.method.capabilities.quantized_base:
        # the 4-bit base as training saw it, dequantized, then the adapter on plain layers
        from peft import PeftModel

        base = run.load_base(**run.method.model_load_options("cpu"))
        dequantize_4bit_layers(base)
        model = PeftModel.from_pretrained(base, run.model_dir)
    else:
        model = run.load_model()
    if run.method.saves_adapter:
        model = model.merge_and_unload(safe_merge=True)
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # the 4-bit record of a QLoRA base: its layers are plain now
    model.is_loaded_in_4bit = False
    model.quantization_method = None
    model = model.to({"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype])
    model.eval()
    return model


def dequantize_4bit_layers(model) -> int:
    """Replace every bitsandbytes 4-bit linear layer by a plain ``nn.Linear`` holding its
    dequantized weights (what QLoRA trained against). Returns how many were replaced."""
    import torch
    from torch import nn

    replaced = 0
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf

    for name, module in list(model.named_modules()):
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        weight = module.weight

        dense = bnbf.dequantize_4bit(weight.data, weight.quant_state).to(torch.float32)
        linear = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(dense)
            if module.bias is not None:
                linear.bias.copy_(module.bias.float())
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, linear)
        replaced += 1
    return replaced
