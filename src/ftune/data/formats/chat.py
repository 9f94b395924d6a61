"""OpenAI fine-tuning chat format: {"messages": [{"role": ..., "content": ...}, ...]}.

Multi-turn conversations train on every assistant turn. `parse_messages` is shared with the
preference format, whose prompts are message lists too.
"""

from __future__ import annotations

import json
from typing import Any

from ftune.data.conversation import ROLES, Conversation, Example, Message
from ftune.data.formats.base import DataFormat, RowProblem, json_type, register_format

# Message keys that change what a turn means; ignoring them would train on the wrong thing.
UNSUPPORTED_MESSAGE_KEYS = {
    "tool_calls": "tool calls are not supported",
    "function_call": "function calls are not supported",
    "weight": 'per-turn "weight" is not supported (every assistant turn is trained)',
}


def parse_messages(value: object, field: str) -> list[Message]:
    """A list of `Message`s from JSON, or RowProblem naming the first bad item as `field[i]`.

    Checks structure only (objects, roles, string contents, system first); what a complete
    example needs (e.g. a final assistant turn) is up to the format.
    """
    if not isinstance(value, list):
        raise RowProblem(f'"{field}" is {json_type(value)}, expected a list of '
                         '{"role": ..., "content": ...} objects')
    if not value:
        raise RowProblem(f'"{field}" is an empty list')
    messages = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise RowProblem(f'{where} is {json_type(item)}, expected an object with "role" and '
                             '"content"')
        for key, reason in UNSUPPORTED_MESSAGE_KEYS.items():
            if key in item:
                raise RowProblem(f'{where} has "{key}": {reason}')
        if "role" not in item:
            raise RowProblem(f'{where} has no "role"')
        role = item["role"]
        if role not in ROLES:
            shown = json.dumps(role, ensure_ascii=False)
            raise RowProblem(f"{where}.role = {shown}: expected {' | '.join(ROLES)}")
        if "content" not in item:
            raise RowProblem(f'{where} ({role}) has no "content"')
        content = item["content"]
        if not isinstance(content, str):
            raise RowProblem(f"{where}.content is {json_type(content)}, expected a string")
        if role == "system" and i > 0:
            raise RowProblem(f"{where} is a system message: only the first message may be system")
        messages.append(Message(role, content))
    return messages


def messages_record(messages: list[Message]) -> list[dict[str, str]]:
    """Messages as JSON objects."""
    return [{"role": m.role, "content": m.content} for m in messages]


@register_format("chat")
class Chat(DataFormat):
    description = 'OpenAI chat fine-tuning format ("messages" with role and content)'
    kind = "sft"
    required_keys = frozenset({"messages"})

    def parse(self, values: dict[str, Any]) -> Example:
        if "messages" not in values:
            raise RowProblem('missing "messages" (chat rows need a "messages" list)')
        messages = parse_messages(values["messages"], "messages")
        for i, m in enumerate(messages):
            if m.role == "assistant" and not m.content.strip():
                raise RowProblem(f"messages[{i}] (assistant) is empty")
        roles = {m.role for m in messages}
        if "user" not in roles:
            raise RowProblem("no user message")
        if "assistant" not in roles:
            raise RowProblem("no assistant message: nothing to train on")
        if messages[-1].role != "assistant":
            raise RowProblem(f'last message is "{messages[-1].role}": nothing to train on after it')
        return Conversation(messages)

    def to_record(self, example: Example) -> dict[str, Any]:
        if not isinstance(example, Conversation):
            raise RowProblem(f"chat holds conversations, not a {type(example).__name__}")
        return {"messages": messages_record(example.messages)}
