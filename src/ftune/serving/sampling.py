"""How a request picks each next token: greedy, or sampled with temperature, top-p and a seed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sampling:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


def next_token(logits, sampling: Sampling, generator) -> int:
    import torch

    if sampling.temperature <= 0:
        return int(logits.argmax())
    probabilities = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        ordered, order = probabilities.sort(descending=True)
        keep = ordered.cumsum(0) - ordered < sampling.top_p  # the smallest set reaching top_p
        ordered = ordered * keep
        probabilities = torch.zeros_like(probabilities).scatter(0, order, ordered)
    return int(torch.multinomial(probabilities / probabilities.sum(), 1, generator=generator))
