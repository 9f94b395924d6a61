"""Log-likelihood of completions after prompts, batched: the primitive behind label choice and
preference scores."""

from __future__ import annotations

from typing import Sequence


def completion_logps(model, pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 16,
                     progress: str | None = None) -> list[tuple[float, int]]:
    """For each (prompt ids, completion ids): the summed log-probability of the completion
    tokens given the prompt, and their count. Rows are length-sorted into right-padded batches."""
    import torch

    from ftune.models.lm_head import shifted_token_logps

    device = next(model.parameters()).device
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress and len(batches) > 2:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=progress, unit="batch", leave=False)
    results: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
    model.eval()
    with torch.inference_mode():
        for rows in batches:
            width = max(len(pairs[i][0]) + len(pairs[i][1]) for i in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            labels = torch.full((len(rows), width), -100, dtype=torch.long)
            for r, i in enumerate(rows):
                prompt, completion = pairs[i]
                sequence = prompt + completion
                ids[r, : len(sequence)] = torch.tensor(sequence)
                mask[r, : len(sequence)] = 1
                labels[r, len(prompt): len(sequence)] = torch.tensor(completion)
            # the LM head runs only at the completion positions (no full logits)
            logps, scored = shifted_token_logps(model, {"input_ids": ids.to(device), "attention_mask": mask.to(device)},
                                                labels.to(device))
            row_of_token = scored.nonzero()[:, 0]
            sums = torch.zeros(len(rows), dtype=logps.dtype, device=logps.device).index_add_(0, row_of_token, logps)
            for r, i in enumerate(rows):
                results[i] = (float(sums[r]), len(pairs[i][1]))
    return results
