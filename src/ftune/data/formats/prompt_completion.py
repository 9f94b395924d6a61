"""Prompt / completion pairs: {"prompt", "completion"} -> one user turn, one reply."""

from __future__ import annotations

from typing import Any

from ftune.data.conversation import Conversation, Example, Message
from ftune.data.formats.base import DataFormat, RowProblem, register_format, text_field

HINT = "prompt_completion rows need prompt and completion"


@register_format("prompt_completion")
class PromptCompletion(DataFormat):
    description = "a prompt and the completion to train on"
    kind = "sft"
    required_keys = frozenset({"prompt", "completion"})

    def parse(self, values: dict[str, Any]) -> Example:
        prompt = text_field(values, "prompt", HINT)
        completion = text_field(values, "completion", HINT)
        return Conversation([Message("user", prompt), Message("assistant", completion)])

    def to_record(self, example: Example) -> dict[str, Any]:
        roles = [m.role for m in example.messages] if isinstance(example, Conversation) else None
        if roles != ["user", "assistant"]:
            shape = f"this one has {', '.join(roles)}" if roles else f"not a {type(example).__name__}"
            raise RowProblem(f"prompt_completion holds one user turn and one reply; {shape}")
        return {"prompt": example.messages[0].content, "completion": example.messages[1].content}
