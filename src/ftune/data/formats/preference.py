"""Preference pairs with an explicit prompt: {"prompt", "chosen", "rejected"}.

Each field is either a string (a single user prompt, two replies) or, as in TRL's
conversational preference format, a message list: the prompt turns, and for chosen and
rejected a list holding one assistant message. Rows are written back in the message-list form
so every row of a converted file has the same shape (mixed shapes break Arrow-based readers).
"""

from __future__ import annotations

from typing import Any

from ftune.data.conversation import Example, Message, PreferencePair
from ftune.data.formats.base import DataFormat, RowProblem, register_format, text_field
from ftune.data.formats.chat import messages_record, parse_messages

HINT = "preference rows need prompt, chosen and rejected"


def prompt_messages(value: object, key: str, values: dict[str, Any]) -> list[Message]:
    """The prompt turns of a string or message-list prompt; it must end with a user turn."""
    if isinstance(value, list):
        messages = parse_messages(value, key)
    else:
        messages = [Message("user", text_field(values, key, HINT))]
    if messages[-1].role != "user":
        raise RowProblem(f'{key}: last message is "{messages[-1].role}", expected "user" (the '
                         "message the replies answer)")
    if not any(m.content.strip() for m in messages if m.role == "user"):
        raise RowProblem(f"{key} has no non-empty user message")
    return messages


def reply_text(values: dict[str, Any], key: str) -> str:
    """The text of a reply given as a string or as a list of one assistant message."""
    value = values.get(key)
    if not isinstance(value, list):
        return text_field(values, key, HINT)
    messages = parse_messages(value, key)
    if len(messages) != 1 or messages[0].role != "assistant":
        roles = ", ".join(m.role for m in messages)
        raise RowProblem(f"{key} must hold one assistant message, found: {roles}")
    if not messages[0].content.strip():
        raise RowProblem(f"{key}[0] (assistant) is empty")
    return messages[0].content


def check_pair(chosen: str, rejected: str) -> None:
    """RowProblem when the two replies are the same (ignoring surrounding whitespace)."""
    if chosen.strip() == rejected.strip():
        raise RowProblem("chosen and rejected are identical: no preference to learn")


@register_format("preference")
class Preference(DataFormat):
    description = "prompt with a chosen and a rejected reply (strings or message lists)"
    kind = "preference"
    required_keys = frozenset({"prompt", "chosen", "rejected"})

    def parse(self, values: dict[str, Any]) -> Example:
        if "prompt" not in values:
            raise RowProblem(f'missing "prompt" ({HINT})')
        prompt = prompt_messages(values["prompt"], "prompt", values)
        chosen, rejected = reply_text(values, "chosen"), reply_text(values, "rejected")
        check_pair(chosen, rejected)
        return PreferencePair(prompt, chosen, rejected)

    def to_record(self, example: Example) -> dict[str, Any]:
        if not isinstance(example, PreferencePair):
            raise RowProblem(f"preference holds preference pairs, not a {type(example).__name__}")
        return {
            "prompt": messages_record(example.prompt),
            "chosen": messages_record([Message("assistant", example.chosen)]),
            "rejected": messages_record([Message("assistant", example.rejected)]),
        }

