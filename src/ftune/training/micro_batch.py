"""Split one collated batch into micro-batches of at most N padded tokens.

The memory planner caps the tokens a single forward/backward pass may hold; a batch above the
cap is run as several micro-batches whose gradients add up to the batch's (see
``ftune.training.trainer.MicroBatchMixin`` for the loss weighting). Rows keep their order
inside each piece; padding beyond a piece's longest row is cut away.

Three batch layouts are understood:
- padded rows (``input_ids`` [rows, width], optional ``attention_mask``, ``labels``, ...);
- preference batches from TRL's DPO collator: ``pairs`` chosen rows followed by the same
  number of rejected rows; a pair's two rows always stay together;
- one packed row (padding-free: ``position_ids`` restart at 0 for each sequence), split at
  sequence boundaries.
"""

from __future__ import annotations

from typing import Any

import torch


def padded_tokens(batch: dict[str, Any]) -> int:
    """Tokens one forward pass over ``batch`` processes, padding included."""
    ids = batch["input_ids"]
    return int(ids.shape[0] * ids.shape[1])


def row_lengths(batch: dict[str, Any]) -> torch.Tensor:
    """Real length of each row (right padding), from the attention mask when there is one."""
    mask = batch.get("attention_mask")
    if mask is not None:
        return mask.sum(dim=1)
    return torch.full((batch["input_ids"].shape[0],), batch["input_ids"].shape[1])


def split_batch(batch: dict[str, Any], max_tokens: int | None, pairs: bool = False) -> list[tuple[dict[str, Any], float]]:
    """Pieces of ``batch`` each within ``max_tokens`` padded tokens (a single row or pair over
    the cap stays whole), with the share of the batch's rows (or pairs) each holds."""
    if not max_tokens or padded_tokens(batch) <= max_tokens:
        return [(batch, 1.0)]
    ids = batch["input_ids"]
    if ids.shape[0] == 1 and "position_ids" in batch and batch.get("attention_mask") is None:
        return _split_packed(batch, max_tokens)
    lengths = row_lengths(batch)
    units = ids.shape[0] // 2 if pairs else ids.shape[0]
    unit_rows = [[u, u + units] if pairs else [u] for u in range(units)]
    unit_length = [int(max(lengths[r] for r in rows)) for rows in unit_rows]
    groups: list[list[int]] = []
    current: list[int] = []
    for unit in range(units):
        candidate = current + [unit]
        width = max(unit_length[u] for u in candidate)
        if current and width * len(candidate) * len(unit_rows[unit]) > max_tokens:
            groups.append(current)
            candidate = [unit]
        current = candidate
    groups.append(current)
    pieces = []
    for group in groups:
        rows = [r for u in group for r in unit_rows[u]]
        if pairs:  # chosen rows first, then their rejected rows, as the collator lays them out
            rows = [unit_rows[u][0] for u in group] + [unit_rows[u][1] for u in group]
        width = max(unit_length[u] for u in group)
        pieces.append((_take_rows(batch, rows, width, ids.shape), len(group) / units))
    return pieces


def _take_rows(batch: dict[str, Any], rows: list[int], width: int, shape: torch.Size) -> dict[str, Any]:
    index = torch.tensor(rows)
    piece = {}
    for key, value in batch.items():
        if not torch.is_tensor(value) or value.dim() == 0:
            piece[key] = value
        elif value.shape[0] == shape[0]:
            value = value.index_select(0, index.to(value.device))
            piece[key] = value[:, :width] if value.dim() > 1 and value.shape[1] == shape[1] else value
        elif value.shape[0] == shape[0] // 2:  # one value per pair (e.g. precomputed reference log-probs)
            pair_index = index[: len(rows) // 2].to(value.device)
            piece[key] = value.index_select(0, pair_index)
        else:
            piece[key] = value
    return piece


def _split_packed(batch: dict[str, Any], max_tokens: int) -> list[tuple[dict[str, Any], float]]:
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    width = batch["input_ids"].shape[1]
    bounds = list(zip(starts, starts[1:] + [width]))
    pieces, begin, end = [], bounds[0][0], bounds[0][0]
    for start, stop in bounds:
        if stop - begin > max_tokens and end > begin:
            pieces.append((begin, end))
            begin = start
        end = stop
    pieces.append((begin, end))
    sequences = len(bounds)
    result = []
    for begin, end in pieces:
        part = {k: (v[:, begin:end] if torch.is_tensor(v) and v.dim() == 2 and v.shape[1] == width else v)
                for k, v in batch.items()}
        count = sum(1 for s, _ in bounds if begin <= s < end)
        result.append((part, count / sequences))
    return result
