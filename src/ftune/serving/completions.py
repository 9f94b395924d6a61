"""Chat and text completions in OpenAI's shapes, whole or streamed as chunks, for one served model."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from ftune.serving.errors import ApiError
from ftune.serving.sampling import Sampling


@dataclass
class Reply:
    """A finished generation: text, why it ended, and the token counts."""

    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def chat_prompt_ids(served, messages: list[dict[str, Any]]) -> list[int]:
    """The served model's own chat template applied to OpenAI messages, ready for the reply."""
    from ftune.data.conversation import Message
    from ftune.data.masking import encode_prompt

    turns = []
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant"):
            raise ApiError(400, f"messages[{index}].role = {role!r}: use system, user or assistant",
                           param=f"messages[{index}].role")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{index}].content must be a string", param=f"messages[{index}].content")
        turns.append(Message(role, content))
    if not turns:
        raise ApiError(400, "messages: give at least one message", param="messages")
    return encode_prompt(turns, served.template, served.backend.tokenizer)


def text_prompt_ids(served, prompt: str) -> list[int]:
    return served.backend.tokenizer(prompt, add_special_tokens=False)["input_ids"]


def stream_reply(served, prompt_ids: list[int], sampling: Sampling) -> Iterator[tuple[str, Reply | None]]:
    """Yield (new text, None) as the reply grows, then ("", Reply) once it ends. The tokens come
    from the base's batcher; closing the stream cancels the request's row."""
    from ftune.serving.batcher import Job

    backend = served.backend
    tokenizer = backend.tokenizer
    if len(prompt_ids) + 1 > backend.context:
        raise ApiError(400, f"This model's context is {backend.context} tokens; the prompt has {len(prompt_ids)}",
                       param="messages", code="context_length_exceeded")
    sampling.max_tokens = min(sampling.max_tokens, backend.context - len(prompt_ids))
    stops = set(backend.stop_ids)
    job = backend.batcher.submit(Job(served.name, list(prompt_ids), sampling))
    generated: list[int] = []
    sent, finish, ended_turn = "", "length", False
    try:
        while True:
            token = job.tokens.get()
            if isinstance(token, BaseException):
                raise token
            if token is None:
                break
            if token in stops:
                finish, ended_turn = "stop", True
                break
            generated.append(token)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            cut = _stop_at(text, sampling.stop)
            if cut is not None:
                text, finish = text[:cut], "stop"
            if text.endswith("\ufffd") and cut is None:  # half a character: wait for the rest
                continue
            if len(text) > len(sent):
                yield text[len(sent):], None
                sent = text
            if cut is not None:
                break
    finally:
        job.cancelled.set()  # a closed stream or a stop string frees the row
    yield "", Reply(sent, finish, len(prompt_ids), len(generated) + ended_turn)


def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    found = [text.find(s) for s in stops if s and s in text]
    return min(found) if found else None


def whole_reply(served, prompt_ids: list[int], sampling: Sampling) -> Reply:
    reply = None
    for _, done in stream_reply(served, prompt_ids, sampling):
        reply = done or reply
    return reply


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def chat_response(name: str, reply: Reply) -> dict[str, Any]:
    return {"id": completion_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": reply.usage()}


def text_response(name: str, reply: Reply) -> dict[str, Any]:
    return {"id": completion_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": name,
            "choices": [{"index": 0, "text": reply.text, "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": reply.usage()}


def chat_chunks(name: str, pieces: Iterator[tuple[str, Reply | None]], include_usage: bool) -> Iterator[str]:
    """The data of each server-sent event, in OpenAI's chunk shape: the first delta carries the
    role; the last chunk the finish reason; with ``include_usage`` a final chunk of usage; then
    ``[DONE]``."""
    ident, created = completion_id("chatcmpl"), int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, usage=None, choices=True) -> str:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else []}
        if usage is not None:
            body["usage"] = usage
        return json.dumps(body)

    yield chunk({"role": "assistant", "content": ""})
    for text, done in pieces:
        if done is None:
            yield chunk({"content": text})
        else:
            yield chunk({}, done.finish_reason)
            if include_usage:
                yield chunk({}, usage=done.usage(), choices=False)
    yield "[DONE]"
