"""The examples generative training sees, whatever file format they came from.

Every format in `ftune.data.formats` parses its rows into one of these, so templates,
masking and the SFT / DPO objectives never look at raw records.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass
class Conversation:
    """An SFT example: trained on the assistant turns."""

    messages: list[Message]


@dataclass
class PlainText:
    """Continued pre-training: trained on every token."""

    text: str


@dataclass
class PreferencePair:
    """DPO: the prompt turns, then two candidate final assistant replies."""

    prompt: list[Message]
    chosen: str
    rejected: str


Example = Conversation | PlainText | PreferencePair
ROLES = ("system", "user", "assistant")
