"""Stanford Alpaca: {"instruction", "input" (optional), "output"} -> one user turn, one reply."""

from __future__ import annotations

from typing import Any

from ftune.data.conversation import Conversation, Example, Message
from ftune.data.formats.base import DataFormat, RowProblem, register_format, text_field

HINT = "alpaca rows need instruction and output"
INPUT_SEPARATOR = "\n\n"  # instruction and input are one user message, a blank line apart


@register_format("alpaca")
class Alpaca(DataFormat):
    description = "Stanford Alpaca instruction data"
    kind = "sft"
    required_keys = frozenset({"instruction", "output"})
    optional_keys = frozenset({"input"})

    def parse(self, values: dict[str, Any]) -> Example:
        instruction = text_field(values, "instruction", HINT)
        extra = text_field(values, "input", HINT, required=False)
        output = text_field(values, "output", HINT)
        user = instruction + (INPUT_SEPARATOR + extra if extra else "")
        return Conversation([Message("user", user), Message("assistant", output)])

    def to_record(self, example: Example) -> dict[str, Any]:
        roles = [m.role for m in example.messages] if isinstance(example, Conversation) else None
        if roles != ["user", "assistant"]:
            shape = f"this one has {', '.join(roles)}" if roles else f"not a {type(example).__name__}"
            raise RowProblem(f"alpaca holds one user turn and one reply; {shape}")
        user, output = (m.content for m in example.messages)
        # Split at the first blank line so Alpaca's own rows come back as they were; parse()
        # of the result gives the same conversation either way.
        instruction, _, extra = user.partition(INPUT_SEPARATOR)
        if not instruction.strip() or not extra.strip():
            instruction, extra = user, ""
        return {"instruction": instruction, "input": extra, "output": output}
