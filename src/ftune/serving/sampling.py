"""Token-by-token generation with a KV cache: greedy or sampled (temperature, top-p, seed),
stopping on end-of-turn ids; what a streamed reply is made of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence


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


def generate_tokens(model, prompt_ids: Sequence[int], sampling: Sampling, stop_ids: Sequence[int]) -> Iterator[int]:
    """Yield each new token id; the last one is a stop id when the model ended its turn."""
    import torch

    generator = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids)], device=device)
    past = None
    with torch.inference_mode():
        for _ in range(sampling.max_tokens):
            out = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = next_token(out.logits[0, -1].float().cpu(), sampling, generator)
            yield token
            if token in stop_ids:
                return
            ids = torch.tensor([[token]], device=device)
