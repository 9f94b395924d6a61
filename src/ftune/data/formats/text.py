"""Plain text for continued pre-training: {"text"}, trained on every token."""

from __future__ import annotations

from typing import Any

from ftune.data.conversation import Example, PlainText
from ftune.data.formats.base import DataFormat, RowProblem, register_format, text_field


@register_format("text")
class Text(DataFormat):
    description = "plain text (continued pre-training, every token trained)"
    kind = "sft"  # the SFT trainer handles it: PlainText has no prompt to mask
    required_keys = frozenset({"text"})

    def parse(self, values: dict[str, Any]) -> Example:
        return PlainText(text_field(values, "text", "text rows need text"))

    def to_record(self, example: Example) -> dict[str, Any]:
        if not isinstance(example, PlainText):
            # Flattening turns into text would silently train on the prompts too.
            raise RowProblem(f"text holds plain text, not a {type(example).__name__}")
        return {"text": example.text}
