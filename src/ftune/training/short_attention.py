"""Attention over short rows on a CPU, computed with plain matmuls instead of SDPA's flash kernel.

PyTorch's CPU flash-attention kernel has a large fixed cost per call: at 8 rows x 9 heads x 64
dimensions (SmolLM2-135M), bf16, forward and backward took 3.8 ms at 16 tokens, 20 ms at 128 and
45 ms at 222, against 0.9, 12.4 and 35.5 ms for the same attention written as two matmuls and a
softmax (``ShortRowAttention``); at 300 tokens and beyond the kernel wins (67 against 71 ms; 79
against 106 at 384). In whole SmolLM2 + LoRA training steps (8 rows, bf16) the matmul version
was 1.20x faster at 160 tokens, 1.17x at 192, 1.12x at 224 (0.89x in another batch of 222) and
0.94x at 256: hence ``SHORT_ROW_TOKENS`` = 192 for attention that is not causal.

Causal attention (a decoder's) over longer rows goes further: its queries are taken in blocks
of about ``BLOCK_QUERIES`` (128), each block against the keys up to its last query only, so the
part of the score matrix that the causal mask would hide is never computed (a row of 384 tokens
in 3 blocks computes 2/3 of it, one of 768 in 6, 7/12). Against the flash kernel, forward and
backward: 8 x 222 tokens 26 against 47 ms, 8 x 384 70 against 97, 4 x 512 50 against 84, 2 x 768
61 against 95, 1 x 1,024 50 against 57; whole SmolLM2 + LoRA training steps were 1.13x faster
at 8 x 233 and 1.07x at 8 x 384. Rows up to ``CAUSAL_ROW_TOKENS`` (768) take that path; beyond
it the probabilities kept for the backward pass (below) would cost more memory than the time
saved is worth. Rows up to ``SHORT_ROW_TOKENS`` stay one block (two blocks were slower at 8 x 171
in whole steps).

``short_row_attention`` routes transformers' "sdpa" attention through ``ShortRowAttention``
while the block runs, for rows up to those bounds on a CPU (query and key equally long, no
soft-capping, attention sinks or position bias: everything else goes to the flash kernel as
before). The scores are computed in the inputs' dtype (bf16 under autocast), the softmax in
fp32, and only the probabilities, in the inputs' dtype, are kept for the backward pass: 2 bytes
per computed query-key pair under bf16, a third of what eager attention keeps (its fp32 softmax
output and their bf16 copy). Dropout on the probabilities (an encoder's, in training) draws its
mask with ``ftune.training.fast_dropout.keep_mask`` and keeps it, a byte more per pair. The
memory plan counts them (``ActivationCost.square_until``), as a whole square (an over-estimate
for blocked rows).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ftune.training.fast_dropout import applies, keep_mask

SHORT_ROW_TOKENS = 192  # bound for attention that is not causal (one block)
CAUSAL_ROW_TOKENS = 768  # bound for causal attention, computed in query blocks
BLOCK_QUERIES = 128
_UNSUPPORTED = ("softcap", "s_aux", "sinks", "position_bias", "output_attentions")


class ShortRowAttention(torch.autograd.Function):
    """``softmax(q k^T * scale, masked where not allowed) v``; keeps q, k, v and the
    probabilities (in v's dtype) for the backward pass."""

    @staticmethod
    def forward(ctx, query, key, value, allowed, scale: float, dropout: float = 0.0):
        scores = torch.matmul(query, key.transpose(-1, -2)).float().mul_(scale)
        if allowed is not None:
            scores.masked_fill_(~allowed, float("-inf"))
        probabilities = torch.softmax(scores, dim=-1)
        # a query allowed no key at all (a left-padded row's padding) gets zeros, not NaN
        probabilities = probabilities.nan_to_num_(0.0).to(value.dtype)
        keep, ctx.keep_scale = keep_mask(probabilities.shape, dropout) if dropout else (None, 1.0)
        ctx.save_for_backward(query, key, value, probabilities, keep)
        ctx.scale = scale
        return torch.matmul(_dropped(probabilities, keep, ctx.keep_scale), value)

    @staticmethod
    def backward(ctx, grad_output):
        query, key, value, probabilities, keep = ctx.saved_tensors
        grad_output = grad_output.to(value.dtype)
        grad_value = torch.matmul(_dropped(probabilities, keep, ctx.keep_scale).transpose(-1, -2), grad_output)
        grad_probabilities = _dropped(torch.matmul(grad_output, value.transpose(-1, -2)).float(), keep, ctx.keep_scale)
        p = probabilities.float()
        # softmax backward: p * (dp - sum(dp * p)), then the scale of the scores
        grad_scores = p.mul_(grad_probabilities.sub_((grad_probabilities * p).sum(-1, keepdim=True)))
        grad_scores = grad_scores.mul_(ctx.scale).to(query.dtype)
        return (torch.matmul(grad_scores, key), torch.matmul(grad_scores.transpose(-1, -2), query),
                grad_value, None, None, None)


def _dropped(probabilities, keep, scale: float):
    """The probabilities (or their gradient) where ``keep`` keeps them, scaled; as they are
    where there is no dropout (``keep`` None)."""
    return probabilities if keep is None else probabilities.mul(keep).mul_(scale)


def row_bound(causal: bool) -> int:
    """The longest row that takes the matmul path (see the module docstring)."""
    return CAUSAL_ROW_TOKENS if causal else SHORT_ROW_TOKENS


def takes_short_path(query, key, attention_mask, dropout: float, kwargs: dict, causal: bool = False) -> bool:
    """Whether ``ShortRowAttention`` computes this call (see the module docstring)."""
    length = query.shape[2]
    return (query.device.type == "cpu" and 1 < length <= row_bound(causal) and key.shape[2] == length
            and (not dropout or applies(query, dropout)) and all(kwargs.get(name) is None or kwargs.get(name) is False for name in _UNSUPPORTED)
            and (attention_mask is None or attention_mask.dtype == torch.bool))


def _attention(stock):
    from transformers.integrations.sdpa_attention import repeat_kv

    def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                  is_causal: bool | None = None, **kwargs):
        # a causal module's mask hides every later key, whatever else it hides (padding, windows)
        causal_module = getattr(module, "is_causal", False) is True
        if not takes_short_path(query, key, attention_mask, dropout, kwargs, causal_module):
            return stock(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                         is_causal=is_causal, **kwargs)
        groups = getattr(module, "num_key_value_groups", 1)
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else query.dtype
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
        length = query.shape[2]
        allowed = attention_mask
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        if allowed is None and causal:
            allowed = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        if not causal_module or length <= SHORT_ROW_TOKENS or allowed is None:  # None: every key allowed
            output = ShortRowAttention.apply(query, key, value, allowed, scale, dropout)
        else:
            blocks = -(-length // BLOCK_QUERIES)
            edges = [length * i // blocks for i in range(blocks + 1)]
            output = torch.cat([ShortRowAttention.apply(query[:, :, start:stop], key[:, :, :stop], value[:, :, :stop],
                                                        allowed[..., start:stop, :stop], scale, dropout)
                                for start, stop in zip(edges, edges[1:])], dim=2)
        return output.transpose(1, 2).contiguous(), None

    attention.stock = stock
    return attention


def square_term_until(model, device: str, widest_probe: int) -> int | None:
    """Where attention memory stops growing with the square of the row for ``model`` on
    ``device``: the matmul path's bound (``row_bound``) where its "sdpa" attention takes that
    path on a CPU (and the memory probes, no wider than ``widest_probe``, measured it), else None."""
    config = getattr(model, "config", None)
    uses_sdpa = getattr(config, "_attn_implementation", None) == "sdpa"
    bound = row_bound(any(getattr(m, "is_causal", False) is True for m in model.modules()))
    return bound if device == "cpu" and uses_sdpa and widest_probe <= bound else None


_depth = 0


@contextmanager
def short_row_attention():
    """While the block runs, transformers' "sdpa" attention computes short rows on a CPU with
    ``ShortRowAttention`` (everything else as before). Nested blocks are fine; the stock
    function is back when the outermost ends."""
    global _depth
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if _depth == 0:
        ALL_ATTENTION_FUNCTIONS["sdpa"] = _attention(ALL_ATTENTION_FUNCTIONS["sdpa"])
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            ALL_ATTENTION_FUNCTIONS["sdpa"] = ALL_ATTENTION_FUNCTIONS["sdpa"].stock
            if ALL_ATTENTION_FUNCTIONS["sdpa"] is ALL_ATTENTION_FUNCTIONS._global_mapping.get("sdpa"):
                del ALL_ATTENTION_FUNCTIONS["sdpa"]  # back to the shared default
