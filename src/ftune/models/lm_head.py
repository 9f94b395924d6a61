"""Log-probabilities of chosen tokens without a ``[tokens x vocabulary]`` logits tensor.

A causal LM's forward projects every position onto the whole vocabulary: for SmolLM2 that is
49,152 floats (192 KB) per token, 1.9 GB for a batch of 9,600 tokens, before the softmax and
its gradient make more copies. Training and scoring need one log-probability per *target*
token. Here the model runs with its LM head swapped for a pass-through, so its output is the
final hidden states; the head is then applied only at the target positions, a chunk of
tokens at a time, so at most one chunk of logits is alive at any moment. In training, a frozen
head (every technique but full fine-tuning) gets each chunk's gradient for the hidden states
while the chunk is computed (``FrozenHeadLogps``); a trained head's chunks are recomputed in
the backward pass (activation checkpointing).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

# Tokens per LM-head chunk: 512 x 49,152 x 4 bytes = 100 MB of logits for SmolLM2.
CHUNK_TOKENS = 512


def chunk_bytes(vocab_size: int, chunk_tokens: int = CHUNK_TOKENS) -> int:
    """Peak bytes one chunk costs: logits, their log-softmax and, in backward, their gradient."""
    return 3 * chunk_tokens * vocab_size * 4


def _hf_model(model) -> nn.Module:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    inner = get_base() if callable(get_base) else model
    # prompt-learning PEFT models return the HF model itself; LoRA-style ones its ``.model``
    return inner


def supports_hidden_state_scoring(model) -> bool:
    """False for models whose logits are more than ``lm_head(hidden)`` (soft-capped or scaled)."""
    config = getattr(_hf_model(model), "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"):
        if getattr(text_config, key, None) not in (None, 1, 1.0):
            return False
    get_head = getattr(_hf_model(model), "get_output_embeddings", None)
    return callable(get_head) and get_head() is not None


@contextlib.contextmanager
def lm_head_removed(model) -> Iterator[nn.Module]:
    """Inside the block the model returns its final hidden states as ``.logits``; yields the head."""
    hf = _hf_model(model)
    head = hf.get_output_embeddings()
    hf.set_output_embeddings(nn.Identity())
    try:
        yield head
    finally:
        hf.set_output_embeddings(head)


def _chunk_logps(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


class FrozenHeadLogps(torch.autograd.Function):
    """``log p(targets[i] | hidden[i])`` through a frozen bias-free linear head (``weight``
    [V, H]), with the gradient for ``hidden`` computed in the forward pass, a chunk at a time.

    Each log-probability depends on its own hidden state only, and its gradient there is
    ``(onehot(target) - softmax(logits)) @ weight``: computed with the chunk's logits at hand
    and kept ([N, H], in the matmul dtype), the backward pass only scales it by each token's
    upstream gradient. A checkpointed chunk computes its logits twice (forward, then again in
    backward); this once: for SmolLM2, one [tokens x 576] x [576 x 49,152] matmul a chunk less.
    Matmuls run in ``dtype`` (the autocast dtype, else the hidden states'), as autocast would.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_tokens: int, dtype):
        matrix = _in_dtype(weight, dtype)
        tokens = hidden.shape[0]
        logps = torch.empty(tokens, dtype=torch.float32, device=hidden.device)
        grad = torch.empty(hidden.shape, dtype=dtype, device=hidden.device)
        # three [chunk x V] buffers (two in fp32) written in place by every chunk: a fresh tensor of that size
        # costs the page faults of its first touch (SmolLM2, 512 tokens: 100 MB, ~30 ms each)
        rows = min(chunk_tokens, tokens)
        low = torch.empty((rows, matrix.shape[0]), dtype=dtype, device=hidden.device)  # logits, then probabilities
        logits = low if dtype == torch.float32 else torch.empty((rows, matrix.shape[0]), dtype=torch.float32,
                                                                  device=hidden.device)
        chunk = torch.empty_like(logits)  # log-probabilities, then softmax - onehot
        for start in range(0, tokens, chunk_tokens):
            stop = min(start + chunk_tokens, tokens)
            n = stop - start
            torch.matmul(hidden[start:stop].to(dtype), matrix.t(), out=low[:n])
            if logits is not low:
                logits[:n].copy_(low[:n])
            torch.log_softmax(logits[:n], dim=-1, out=chunk[:n])
            wanted = targets[start:stop].unsqueeze(-1)
            logps[start:stop] = chunk[:n].gather(-1, wanted).squeeze(-1)
            probabilities = chunk[:n].exp_()
            probabilities.scatter_add_(-1, wanted, probabilities.new_full(wanted.shape, -1.0))  # softmax - onehot
            low[:n].copy_(probabilities)
            torch.matmul(low[:n], matrix, out=grad[start:stop])
        del low, logits, chunk
        ctx.save_for_backward(grad)
        ctx.hidden_dtype = hidden.dtype
        return logps

    @staticmethod
    def backward(ctx, grad_logps):
        (grad,) = ctx.saved_tensors
        # grad holds d(-logp)/dh: the sign goes with the scale
        return (grad.to(ctx.hidden_dtype) * (-grad_logps).unsqueeze(-1).to(ctx.hidden_dtype)), None, None, None, None


_casts = WeakIdKeyDictionary()  # frozen head weight -> (version, storage, dtype, the cast copy)


def _in_dtype(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` in ``dtype``: a frozen head's cast is made once and kept while the weight
    lives and is unchanged (its version counter and storage), not once a pass (SmolLM2's tied
    fp32 head: 28M values, ~60 ms a cast)."""
    if weight.dtype == dtype:
        return weight.detach()
    state = (weight._version, weight.data_ptr(), dtype)
    cached = _casts.get(weight)
    if cached is not None and cached[:3] == state:
        return cached[3]
    cast = weight.detach().to(dtype)
    _casts[weight] = (*state, cast)
    return cast


def _frozen_linear_head(head: nn.Module, hidden: torch.Tensor) -> bool:
    return (torch.is_grad_enabled() and hidden.requires_grad and type(head) is nn.Linear and head.bias is None
            and not head.weight.requires_grad)


def target_logps(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                 chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """``log p(targets[i] | hidden[i])`` for ``hidden`` of shape [N, H] and ``targets`` [N]."""
    from torch.utils.checkpoint import checkpoint

    if _frozen_linear_head(head, hidden) and hidden.shape[0]:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        return FrozenHeadLogps.apply(hidden, head.weight, targets, chunk_tokens, dtype)
    pieces = []
    for start in range(0, hidden.size(0), chunk_tokens):
        h, t = hidden[start:start + chunk_tokens], targets[start:start + chunk_tokens]
        if torch.is_grad_enabled() and h.requires_grad:
            pieces.append(checkpoint(_chunk_logps, head, h, t, use_reentrant=False))
        else:
            pieces.append(_chunk_logps(head, h, t))
    if not pieces:
        return hidden.new_zeros(0, dtype=torch.float32)
    return torch.cat(pieces)


def shifted_token_logps(model, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                        chunk_tokens: int = CHUNK_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model(**inputs)`` and score each position's next token where ``labels`` is not -100.

    Returns (log-probabilities of the scored tokens, flat in row-major order; the boolean
    mask [batch, length - 1] of scored positions). ``labels`` are the unshifted labels, as
    in transformers' causal-LM convention.
    """
    target_mask = labels[:, 1:] != -100
    if not supports_hidden_state_scoring(model):  # rare: fall back to the model's own logits
        logits = model(**inputs, use_cache=False).logits[:, -labels.size(1):]
        logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        return logps[target_mask].gather(-1, labels[:, 1:][target_mask].unsqueeze(-1)).squeeze(-1), target_mask
    with lm_head_removed(model) as head:
        hidden = model(**inputs, use_cache=False).logits
    # prompt-learning techniques put virtual tokens in front: keep the real positions
    hidden = hidden[:, -labels.size(1):][:, :-1]
    return target_logps(head, hidden[target_mask], labels[:, 1:][target_mask], chunk_tokens), target_mask
