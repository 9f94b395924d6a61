"""Generative evaluation: loss and perplexity on response tokens, and generation samples."""

from __future__ import annotations

import math
from typing import Any, Sequence


def response_loss(model, encoded: Sequence, collator, batch_size: int = 8, progress: bool = True) -> dict[str, Any]:
    """Token-weighted mean cross-entropy over the trained (response) tokens, and its perplexity.

    ``encoded`` items are dicts with ``input_ids`` and ``labels`` (-100 = not scored). Each
    example's (summed negative log-likelihood, scored tokens) is kept under ``EXAMPLE_LOSSES``,
    in the order given, for intervals and paired comparisons.
    """
    import torch

    from ftune.eval.baselines import EXAMPLE_LOSSES
    from ftune.models.lm_head import shifted_token_logps

    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress and len(batches) > 4:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="scoring", unit="batch", leave=False)
    per_example: list[list[float]] = [[0.0, 0]] * len(encoded)
    model.eval()
    with torch.inference_mode():
        for batch_indices in batches:
            batch = collator([encoded[i] for i in batch_indices])
            labels = batch.pop("labels").to(device)
            # log-probabilities of the scored tokens only: no [tokens x vocabulary] logits kept
            logps, scored = shifted_token_logps(model, {k: v.to(device) for k, v in batch.items()}, labels)
            sums = torch.zeros(len(batch_indices), dtype=torch.float64).index_add_(
                0, scored.nonzero()[:, 0].cpu(), logps.detach().double().cpu())
            for row, i in enumerate(batch_indices):
                per_example[i] = [-float(sums[row]), int(scored[row].sum())]
    total_loss = sum(nll for nll, _ in per_example)
    total_tokens = sum(tokens for _, tokens in per_example)
    loss = total_loss / max(total_tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": total_tokens, "n": len(encoded),
            EXAMPLE_LOSSES: per_example}


def generate_replies(model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int, temperature: float,
                     top_p: float, eos_ids: list[int], seed: int = 0, streamer=None) -> list[dict[str, Any]]:
    """Generate one reply per prompt (token ids), left-padded in one batch.

    Each result says whether the reply ended with an end-of-sequence token or ran into
    ``max_new_tokens``: a model that never learned to stop runs to the limit.
    """
    import torch

    torch.manual_seed(seed)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt)
        attention[row, width - len(prompt):] = 1
    sampling = temperature > 0
    model.eval()
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), max_new_tokens=max_new_tokens,
            do_sample=sampling, temperature=temperature if sampling else None, top_p=top_p if sampling else None,
            top_k=None, eos_token_id=eos_ids, pad_token_id=pad_id, streamer=streamer,
        )
    results = []
    for row in range(len(prompts)):
        new = output[row, width:].tolist()
        ended = next((i for i, t in enumerate(new) if t in eos_ids), None)
        reply_ids = new if ended is None else new[:ended]
        results.append({
            "reply": tokenizer.decode(reply_ids, skip_special_tokens=True).strip(),
            "new_tokens": len(reply_ids) + (0 if ended is None else 1),
            "ended_with_eos": ended is not None,
        })
    return results
