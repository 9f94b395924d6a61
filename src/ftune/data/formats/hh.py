r"""Anthropic HH-RLHF transcripts: {"chosen", "rejected"}, two whole dialogues.

Each is a string "\n\nHuman: ...\n\nAssistant: ...\n\nHuman: ...\n\nAssistant: final". The
turns both share become the prompt; the two final Assistant replies are chosen and rejected.

A speaker's turn runs until the *other* speaker's marker. In the real data a reply sometimes
contains the same speaker's marker again (the model wrote "\n\nAssistant: " itself, ~0.3% of
rows); that text stays inside the turn verbatim. So the split never depends on what a reply
says, prompts always alternate user / assistant, and `to_record` rebuilds the exact strings.
"""

from __future__ import annotations

import re
from typing import Any

from ftune.data.conversation import Example, Message, PreferencePair
from ftune.data.formats.base import DataFormat, RowProblem, register_format, text_field
from ftune.data.formats.preference import check_pair

HINT = "hh rows need chosen and rejected transcripts"
HUMAN, ASSISTANT = "\n\nHuman: ", "\n\nAssistant: "
_MARKER = re.compile(r"\n\n(Human|Assistant): ")
_ROLE = {"Human": "user", "Assistant": "assistant"}
_SPEAKER = {"user": "Human", "assistant": "Assistant"}


def parse_transcript(text: str, key: str) -> list[Message]:
    """The turns of one transcript (user / assistant, alternating); RowProblem if malformed."""
    if text.startswith("Human: "):  # the same transcript after a .strip()
        text = "\n\n" + text
    if ASSISTANT not in text:
        raise RowProblem(f'{key} has no Assistant turn (no "\\n\\nAssistant: " marker)')
    if not text.startswith(HUMAN):
        raise RowProblem(f'{key} does not start with "\\n\\nHuman: "')
    parts = _MARKER.split(text)  # ["", speaker, content, speaker, content, ...]
    turns: list[Message] = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = _ROLE[speaker]
        if turns and turns[-1].role == role:
            turns[-1] = Message(role, f"{turns[-1].content}\n\n{speaker}: {content}")
        else:
            turns.append(Message(role, content))
    return turns


def render_transcript(turns: list[Message]) -> str:
    """The HH string of alternating user / assistant turns (the inverse of parse_transcript)."""
    return "".join(f"\n\n{_SPEAKER[m.role]}: {m.content}" for m in turns)


def _prefix_difference(chosen: list[Message], rejected: list[Message]) -> str:
    for i, (a, b) in enumerate(zip(chosen, rejected)):
        if a != b:
            return f"turn {i + 1} ({_SPEAKER[a.role]}) differs"
    return f"chosen has {len(chosen) + 1} turns, rejected {len(rejected) + 1}"


@register_format("hh")
class AnthropicHH(DataFormat):
    description = "Anthropic HH-RLHF chosen / rejected transcripts"
    kind = "preference"
    required_keys = frozenset({"chosen", "rejected"})

    def parse(self, values: dict[str, Any]) -> Example:
        chosen = parse_transcript(text_field(values, "chosen", HINT), "chosen")
        rejected = parse_transcript(text_field(values, "rejected", HINT), "rejected")
        for key, turns in (("chosen", chosen), ("rejected", rejected)):
            if turns[-1].role != "assistant":
                raise RowProblem(f"{key} ends with a Human turn, expected a final Assistant reply")
        if chosen[:-1] != rejected[:-1]:
            detail = _prefix_difference(chosen[:-1], rejected[:-1])
            raise RowProblem(f"chosen and rejected differ before the final reply: {detail}")
        for key, turns in (("chosen", chosen), ("rejected", rejected)):
            if not turns[-1].content.strip():
                raise RowProblem(f"{key}: the final Assistant reply is empty")
        check_pair(chosen[-1].content, rejected[-1].content)
        return PreferencePair(chosen[:-1], chosen[-1].content, rejected[-1].content)

    def to_record(self, example: Example) -> dict[str, Any]:
        if not isinstance(example, PreferencePair):
            raise RowProblem(f"hh holds preference pairs, not a {type(example).__name__}")
        roles = [m.role for m in example.prompt]
        if "system" in roles:
            raise RowProblem("HH transcripts have no system turn")
        # A transcript alternates speakers; anything else would not parse back the same.
        expected = ["user", "assistant"] * len(roles)
        if roles != expected[: len(roles)] or roles[-1] != "user":
            raise RowProblem(f"HH transcripts alternate Human / Assistant from a Human turn to "
                             f"the reply; this prompt is {', '.join(roles)}")
        chosen = [*example.prompt, Message("assistant", example.chosen)]
        rejected = [*example.prompt, Message("assistant", example.rejected)]
        for turn in [*chosen, rejected[-1]]:
            other = ASSISTANT if turn.role == "user" else HUMAN
            if other in turn.content:
                raise RowProblem(f"a {_SPEAKER[turn.role]} turn contains {other!r}, which HH "
                                 "would read as the start of a new turn")
        return {"chosen": render_transcript(chosen), "rejected": render_transcript(rejected)}
