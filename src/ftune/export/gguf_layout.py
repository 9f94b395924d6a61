"""Llama in GGUF: llama.cpp's tensor names, the q/k row permutation, and the tensor types.

llama.cpp computes rotary embeddings on interleaved pairs of each head's dimensions, while
Hugging Face's Llama rotates the two halves of each head. GGUF therefore stores the q and k
projections with their rows permuted per head (transformers undoes it when it reads a GGUF);
a writer must apply it, to the full weights and to LoRA's ``lora_b`` rows alike.
"""

from __future__ import annotations

import re

import numpy as np

LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
MODEL_TENSORS = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def gguf_name(hf_name: str) -> str | None:
    """``model.layers.3.self_attn.q_proj.weight`` -> ``blk.3.attn_q.weight``; None when llama.cpp
    has no such tensor (e.g. rotary caches)."""
    module, _, kind = hf_name.rpartition(".")
    if module in MODEL_TENSORS:
        return f"{MODEL_TENSORS[module]}.{kind}"
    match = _LAYER.match(module)
    if match and match.group(2) in LAYER_TENSORS:
        return f"blk.{match.group(1)}.{LAYER_TENSORS[match.group(2)]}.{kind}"
    return None


def permute_rows(rows: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's half-split rotary layout -> llama.cpp's interleaved one, per head, on the
    first axis (output features): weights, biases and ``lora_b`` alike."""
    shape = rows.shape
    return rows.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def rotary_heads(gguf_tensor_name: str, heads: int, kv_heads: int) -> int | None:
    """How many heads to permute by for this tensor, or None when it is not q or k."""
    if ".attn_q." in gguf_tensor_name:
        return heads
    if ".attn_k." in gguf_tensor_name:
        return kv_heads
    return None


def quantize(name: str, array: np.ndarray, quant: str):
    """(data, raw GGML type or None) for ``--quant``: 1-D tensors (norms, biases) stay F32;
    matrices become F16, or Q8_0 where rows split into blocks of 32."""
    import gguf

    if array.ndim == 1:
        return array.astype(np.float32), None
    if quant == "q8_0" and array.shape[-1] % 32 == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(array.astype(np.float32), qtype), qtype
    return array.astype(np.float16), None
