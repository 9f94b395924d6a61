"""Preference evaluation: does the model prefer the chosen reply to the rejected one?

- ``preference_accuracy`` and ``reward_margin`` use DPO's implicit reward
  ``beta * (log p_model(reply) - log p_reference(reply))``; before training model and
  reference are the same, every margin is 0 and ties count half, so the starting point is 0.5.
- ``likelihood_accuracy`` asks the model alone: is the chosen reply more likely per token than
  the rejected one? It is meaningful for a base model too.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence


def encode_pair(pair, template, tokenizer, max_length: int) -> dict[str, list[int]]:
    """Prompt ids and the two completions (reply + end-of-turn), prompt cut from the left to fit."""
    from ftune.data.masking import encode_prompt

    prompt = encode_prompt(pair.prompt, template, tokenizer)
    end = template.end_of_turn or tokenizer.eos_token or ""
    chosen = tokenizer(pair.chosen + end, add_special_tokens=False)["input_ids"]
    rejected = tokenizer(pair.rejected + end, add_special_tokens=False)["input_ids"]
    room = max(1, max_length - max(len(chosen), len(rejected)))
    return {"prompt": prompt[-room:], "chosen": chosen[: max_length - 1], "rejected": rejected[: max_length - 1]}


def _completion_logps(model, prompt: list[int], completion: list[int]) -> tuple[float, int]:
    """Sum of log-probabilities of ``completion`` after ``prompt``, and its token count."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([prompt + completion], device=device)
    logits = model(input_ids=ids, use_cache=False).logits.float()[0, len(prompt) - 1: -1]
    logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[0, len(prompt):, None]).squeeze(-1)
    return float(logps.sum()), len(completion)


def preference_scores(model, encoded_pairs: Sequence[dict[str, list[int]]], beta: float,
                      reference=None, progress: bool = True) -> dict[str, Any]:
    """Scores of ``model`` on encoded pairs. ``reference`` is a model, or None for a PEFT model
    whose adapters, disabled, give the reference (no second copy in memory)."""
    import torch

    pairs = list(encoded_pairs)
    if progress and len(pairs) > 8:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc="scoring pairs", unit="pair", leave=False)
    margins, likelihood_wins = [], 0.0
    model.eval()
    with torch.inference_mode():
        for pair in pairs:
            chosen, n_chosen = _completion_logps(model, pair["prompt"], pair["chosen"])
            rejected, n_rejected = _completion_logps(model, pair["prompt"], pair["rejected"])
            with _reference(model, reference) as ref:
                ref_chosen, _ = _completion_logps(ref, pair["prompt"], pair["chosen"])
                ref_rejected, _ = _completion_logps(ref, pair["prompt"], pair["rejected"])
            margins.append(beta * ((chosen - ref_chosen) - (rejected - ref_rejected)))
            per_token = chosen / n_chosen - rejected / n_rejected
            likelihood_wins += 1.0 if per_token > 0 else 0.5 if per_token == 0 else 0.0
    n = len(margins)
    wins = sum(1.0 if m > 1e-6 else 0.5 if abs(m) <= 1e-6 else 0.0 for m in margins)
    return {"preference_accuracy": wins / n, "reward_margin": sum(margins) / n,
            "likelihood_accuracy": likelihood_wins / n, "n": n}


@contextlib.contextmanager
def _reference(model, reference):
    if reference is not None:
        yield reference
    elif hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        yield model  # no reference: margins are measured against the model itself (0)
