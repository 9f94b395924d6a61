"""A labeled classification task phrased as chat: the text in a user turn, the label's word as
the assistant reply. Lets a decoder LLM be fine-tuned (SFT) and compared with zero-/few-shot
prompting of its base model on the very same prompts."""

from __future__ import annotations

from ftune.data.conversation import Conversation, Message
from ftune.errors import ConfigError


def label_words_for(label_names: list[str], configured: dict[str, str] | None) -> list[str]:
    """The reply for each label, in label order; every label needs one, all distinct."""
    words = [(configured or {}).get(name, name) for name in label_names]
    missing = [name for name in label_names if configured and name not in configured]
    if missing:
        raise ConfigError([f"data.label_words: no word for label(s) {', '.join(map(repr, missing))}; "
                           f"the data has labels {', '.join(label_names)}"])
    if len(set(words)) != len(words):
        raise ConfigError([f"data.label_words: two labels share a word ({', '.join(words)})"])
    return words


def default_instruction(words: list[str]) -> str:
    return f"Classify the text. Answer with one of: {', '.join(words)}."


def label_prompt(text: str, instruction: str) -> list[Message]:
    return [Message("user", f"{instruction}\n\n{text}")]


def to_conversations(texts: list[str], label_ids: list[int], words: list[str], instruction: str) -> list[Conversation]:
    return [Conversation([*label_prompt(text, instruction), Message("assistant", words[label])])
            for text, label in zip(texts, label_ids)]


def few_shot_turns(texts: list[str], label_ids: list[int], words: list[str], instruction: str,
                   shots: int) -> list[Message]:
    """``shots`` solved examples as earlier turns, cycling through the labels so each appears."""
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(label_ids):
        by_label.setdefault(label, []).append(i)
    order, round_ = [], 0
    while len(order) < shots and any(round_ < len(rows) for rows in by_label.values()):
        order += [rows[round_] for _, rows in sorted(by_label.items()) if round_ < len(rows)]
        round_ += 1
    turns: list[Message] = []
    for i in order[:shots]:
        turns += [*label_prompt(texts[i], instruction), Message("assistant", words[label_ids[i]])]
    return turns
