"""Preference evaluation: does the model prefer the chosen reply to the rejected one?

- ``preference_accuracy`` and ``reward_margin`` use DPO's implicit reward
  ``beta * (log p_model(reply) - log p_reference(reply))``; before training model and
  reference are the same, every margin is 0 and ties count half, so the starting point is 0.5.
- ``likelihood_accuracy`` asks the model alone: is the chosen reply more likely per token than
  the rejected one? It is meaningful for a base model too.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, ContextManager, Sequence


def fit_prompt_turns(pair, template, tokenizer, max_length: int):
    """The pair with its oldest conversation turns dropped (a system message is kept) until
    prompt and the longer reply fit in ``max_length`` tokens, or only the last user turn is left.
    Training and evaluation both see the end of a long conversation, where the replies are."""
    from dataclasses import replace

    end = template.end_of_turn or tokenizer.eos_token or ""
    reply = max(len(tokenizer(r + end, add_special_tokens=False)["input_ids"]) for r in (pair.chosen, pair.rejected))
    system = [m for m in pair.prompt[:1] if m.role == "system"]
    turns = pair.prompt[len(system):]
    while len(turns) > 1:
        prompt_tokens = len(tokenizer(template.render_prompt(system + turns), add_special_tokens=False)["input_ids"])
        if prompt_tokens + reply <= max_length:
            break
        turns = turns[2:] if len(turns) > 2 and turns[1].role == "assistant" else turns[1:]
    return pair if len(turns) == len(pair.prompt) - len(system) else replace(pair, prompt=system + turns)


def encode_pair(pair, template, tokenizer, max_length: int) -> dict[str, list[int]]:
    """Prompt ids and the two completions (reply + end-of-turn): the oldest turns dropped first,
    then the prompt cut from the left if it still does not fit."""
    from ftune.data.masking import encode_prompt

    pair = fit_prompt_turns(pair, template, tokenizer, max_length)
    prompt = encode_prompt(pair.prompt, template, tokenizer)
    end = template.end_of_turn or tokenizer.eos_token or ""
    chosen = tokenizer(pair.chosen + end, add_special_tokens=False)["input_ids"]
    rejected = tokenizer(pair.rejected + end, add_special_tokens=False)["input_ids"]
    room = max(1, max_length - max(len(chosen), len(rejected)))
    return {"prompt": prompt[-room:], "chosen": chosen[: max_length - 1], "rejected": rejected[: max_length - 1]}


def preference_scores(model, encoded_pairs: Sequence[dict[str, list[int]]], beta: float,
                      reference=None, pad_id: int = 0, same_as_reference: bool = False,
                      disabled: Callable[[Any], ContextManager] | None = None,
                      reference_scores: list[tuple[float, int]] | None = None) -> dict[str, Any]:
    """Scores of ``model`` on encoded pairs. The reference is ``reference`` (a model), or the
    model itself inside ``disabled(model)`` (its technique's ``Method.disabled``: adapters
    switched off, no second copy in memory), or its ``reference_scores`` already measured
    (:func:`reference_logps`, in the same precision). ``same_as_reference`` (before training)
    skips the reference pass: every margin is 0. Per-pair wins and margins are kept under the
    per-example keys of ``ftune.eval.baselines``."""
    from ftune.eval.baselines import LIKELIHOOD_WINS, MARGINS, PAIR_WINS
    from ftune.eval.scoring import completion_logps

    policy = completion_logps(model, _scored_rows(encoded_pairs), pad_id, batch_size=4, progress="scoring pairs")
    if same_as_reference:
        ref = policy
    else:
        ref = reference_scores or reference_logps(model, encoded_pairs, reference, pad_id, disabled)
    margins, likelihood_wins = [], []
    for i in range(0, len(policy), 2):
        (chosen, n_chosen), (rejected, n_rejected) = policy[i], policy[i + 1]
        margins.append(beta * ((chosen - ref[i][0]) - (rejected - ref[i + 1][0])))
        per_token = chosen / n_chosen - rejected / n_rejected
        likelihood_wins.append(1.0 if per_token > 0 else 0.5 if per_token == 0 else 0.0)
    n = len(margins)
    wins = [1.0 if m > 1e-6 else 0.5 if abs(m) <= 1e-6 else 0.0 for m in margins]
    # DPO's sigmoid loss, -log σ(margin), written to stay finite for any margin
    loss = sum(max(-m, 0.0) + math.log1p(math.exp(-abs(m))) for m in margins) / n
    return {"preference_accuracy": sum(wins) / n, "reward_margin": sum(margins) / n,
            "likelihood_accuracy": sum(likelihood_wins) / n, "loss": loss, "n": n,
            PAIR_WINS: wins, LIKELIHOOD_WINS: likelihood_wins, MARGINS: margins}


def reference_logps(model, encoded_pairs: Sequence[dict[str, list[int]]], reference=None, pad_id: int = 0,
                    disabled: Callable[[Any], ContextManager] | None = None) -> list[tuple[float, int]]:
    """The reference's (log-probability, tokens) of each pair's chosen then rejected reply. The
    reference does not train: scored once, its figures serve every later evaluation."""
    from ftune.eval.scoring import completion_logps

    with _reference(model, reference, disabled) as ref_model:
        return completion_logps(ref_model, _scored_rows(encoded_pairs), pad_id, batch_size=4,
                                progress="scoring pairs (reference)")


def _scored_rows(encoded_pairs) -> list[tuple[list[int], list[int]]]:
    return [(p["prompt"], p[side]) for p in encoded_pairs for side in ("chosen", "rejected")]


@contextlib.contextmanager
def _reference(model, reference, disabled):
    if reference is not None:
        yield reference
    elif disabled is not None:
        with disabled(model):
            yield model
    else:
        raise ValueError("preference_scores: give a reference model, or disabled= to switch the technique off")
