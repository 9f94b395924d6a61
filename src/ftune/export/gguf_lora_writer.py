"""A PEFT LoRA model's low-rank pairs as a llama.cpp GGUF adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ftune.errors import FtuneError
from ftune.export.gguf_layout import gguf_name, permute_rows, rotary_heads


def lora_pairs(model):
    """(Hugging Face module name, A, B, PEFT scale) of every LoRA layer of the active adapter."""
    from peft.tuners.lora import LoraLayer

    pairs = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and module.active_adapters:
            adapter = module.active_adapters[0]
            if adapter not in module.lora_A:
                continue
            a = module.lora_A[adapter].weight.detach().float().cpu().numpy()
            b = module.lora_B[adapter].weight.detach().float().cpu().numpy()
            pairs.append((name.replace("base_model.model.", "", 1), a, b, float(module.scaling[adapter])))
    return pairs


def write_lora_gguf(model, path: Path, *, name: str) -> int:
    """Write the adapter; returns the number of A/B pairs. Each pair's PEFT scale is folded into
    B so that llama.cpp's alpha / rank gives it back: B' = B x scale x rank / alpha."""
    import gguf

    config = model.get_base_model().config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    pairs = lora_pairs(model)
    if not pairs:
        raise FtuneError("the run's model has no LoRA layers to write")
    alpha = float(pairs[0][1].shape[0])  # any value works once folded; the first rank keeps B as small as it was
    modules_to_save = [n for n, _ in model.named_modules() if n.endswith("modules_to_save")]
    if modules_to_save:
        raise FtuneError(f"trained copies of whole layers ({modules_to_save[0]}, ...) do not fit in a GGUF "
                         "adapter; use --to gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_name(name)
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for module, a, b, scale in pairs:
        target = gguf_name(f"{module}.weight")
        if target is None:
            raise FtuneError(f"LoRA on {module}: llama.cpp has no such tensor; use --to gguf")
        rank = a.shape[0]
        b = b * (scale * rank / alpha)
        rotary = rotary_heads(target, heads, kv_heads)
        if rotary:
            b = permute_rows(b, rotary)  # B's rows are the output features, permuted like the weight's
        writer.add_tensor(f"{target}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return len(pairs)
