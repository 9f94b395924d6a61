"""Prompting baselines for open-ended SFT: the base model shown solved training examples.

Each held-out conversation gets ``k`` training conversations put before it as earlier turns:
the same ``k`` for every prompt (fixed few-shot), or the ``k`` whose prompts are most similar
(retrieval-augmented). Only the held-out replies are scored, exactly the tokens that zero-shot
and the tuned model are scored on, so their perplexities compare like with like. A prompt whose
demonstrations would not fit in ``model.max_length`` keeps as many as fit (the least similar go
first); one that fits none is scored as zero-shot, and the count says how often that happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ftune.data.conversation import Conversation, Message, PreferencePair


def prompt_text(example) -> str | None:
    """The words a retriever matches on: the turns before the last reply; None for plain text."""
    if isinstance(example, PreferencePair):
        return "\n".join(m.content for m in example.prompt)
    if isinstance(example, Conversation):
        last = max((i for i, m in enumerate(example.messages) if m.role == "assistant"), default=0)
        return "\n".join(m.content for m in example.messages[:last])
    return None


def _turns(example) -> list[Message]:
    """The example as a conversation, system message included."""
    if isinstance(example, PreferencePair):
        return [*example.prompt, Message("assistant", example.chosen)]
    return list(example.messages)


@dataclass
class DemonstratedItems:
    """Encoded held-out items with demonstrations in front, aligned with the zero-shot items."""

    items: list[dict[str, list[int]]]
    shots: list[int] = field(default_factory=list)  # demonstrations each item kept

    def summary(self, wanted: int) -> dict[str, float | int]:
        return {"shots_wanted": wanted, "mean_shots": round(sum(self.shots) / max(len(self.shots), 1), 2),
                "without_shots": sum(1 for s in self.shots if s == 0)}


def demonstrated_items(held_out: Sequence, train: Sequence, chosen: Sequence[Sequence[int]], template, tokenizer,
                       max_length: int) -> DemonstratedItems:
    """For each held-out example that scores at least one token alone (as ``encode_examples``
    keeps them), its encoding after the training examples ``chosen[i]`` (indices into ``train``,
    most wanted first)."""
    from ftune.data.encode import encode_example

    found = DemonstratedItems([])
    for example, demonstrations in zip(held_out, chosen):
        alone = encode_example(example, template, tokenizer, max_length)
        if all(label == -100 for label in alone.labels):
            continue  # not scored at all, as encode_examples drops it
        item, kept = {"input_ids": alone.input_ids, "labels": alone.labels}, 0
        if not alone.truncated and isinstance(example, (Conversation, PreferencePair)):
            for count in range(len(demonstrations), 0, -1):
                fitted = _with_demonstrations(example, [train[i] for i in demonstrations[:count]], alone, template,
                                              tokenizer, max_length)
                if fitted is not None:
                    item, kept = fitted, count
                    break
        found.items.append(item)
        found.shots.append(kept)
    return found


def _with_demonstrations(example, demonstrations, alone, template, tokenizer, max_length: int):
    """The example after ``demonstrations`` (system messages dropped from them), scoring only the
    example's own replies; None when it does not fit or the replies would not be the same tokens."""
    from ftune.data.masking import encode_conversation

    turns = _turns(example)
    system = turns[:1] if turns and turns[0].role == "system" else []
    shown = [m for demo in demonstrations for m in _turns(demo) if m.role != "system"]
    combined = encode_conversation([*system, *shown, *turns[len(system):]], template, tokenizer, max_length)
    if combined.truncated:
        return None
    scored_alone = [label for label in alone.labels if label != -100]
    positions = [i for i, label in enumerate(combined.labels) if label != -100][-len(scored_alone):]
    labels = [-100] * len(combined.labels)
    for i in positions:
        labels[i] = combined.labels[i]
    if [labels[i] for i in positions] != scored_alone:
        return None
    return {"input_ids": combined.input_ids, "labels": labels}


def fixed_demonstrations(train: Sequence, k: int, seed: int) -> list[int]:
    """``k`` training conversations drawn once (seeded), the shortest of a larger draw, so that
    fixed few-shot fits beside most prompts."""
    import random

    eligible = [i for i, example in enumerate(train) if prompt_text(example) is not None]
    drawn = random.Random(seed).sample(eligible, min(len(eligible), 4 * k))
    return sorted(drawn, key=lambda i: len(prompt_text(train[i]) or "") + _reply_length(train[i]))[:k]


def _reply_length(example) -> int:
    return sum(len(m.content) for m in _turns(example) if m.role == "assistant")


def retrieved_demonstrations(kind: str, train: Sequence, held_out: Sequence, k: int) -> list[list[int]]:
    """For each held-out example, the ``k`` training examples whose prompts are most similar."""
    from ftune.eval.retrieval import nearest_training_rows

    eligible = [i for i, example in enumerate(train) if prompt_text(example) is not None]
    queries = [prompt_text(example) or "" for example in held_out]
    found = nearest_training_rows(kind, [prompt_text(train[i]) for i in eligible], queries, k)
    return [[eligible[j] for j in row] for row in found]
