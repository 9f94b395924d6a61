"""Chat templates: a conversation as text segments, each marked trained or not.

Assistant replies and the end-of-turn marker (or EOS) closing them are trained; system and user
turns and role headers (``<|im_start|>assistant\\n``, ``### Response:\\n``) are not.
``ftune.data.masking`` tokenizes the segments one by one, so the loss mask comes from this
structure, never from searching markers in token ids (TRL issues #1920, #1191). Whitespace after
the end-of-turn marker (the ``\\n`` after ``<|im_end|>``) is not trained: generation stops at the
marker, so a reply's trained text is exactly ``content + end_of_turn``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ftune.data.conversation import Message
from ftune.errors import FtuneError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class Segment:
    """A piece of rendered text; ``trained`` pieces contribute to the loss."""

    text: str
    trained: bool


class Template:
    """Base class: subclasses set ``name`` (via the decorator) and render conversations."""

    name: ClassVar[str]
    # The text that ends an assistant turn; generation stops on it.
    end_of_turn: str = ""

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None):
        self.tokenizer = tokenizer

    def render_segments(self, messages: list[Message]) -> list[Segment]:
        """The whole conversation as segments; assistant replies + end-of-turn are trained."""
        raise NotImplementedError

    def render_prompt(self, messages: list[Message]) -> str:
        """The text a model continues to write the next assistant reply (ends with its header)."""
        raise NotImplementedError

    def render_text(self, messages: list[Message]) -> str:
        """The full rendering (the segments joined)."""
        return "".join(segment.text for segment in self.render_segments(messages))

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Strings that end a generated reply (the end-of-turn marker, then EOS if different)."""
        eos = getattr(self.tokenizer, "eos_token", None)
        return tuple(dict.fromkeys(s for s in (self.end_of_turn, eos) if s))

    def describe(self) -> dict[str, Any]:
        """What a run directory records about the template used."""
        return {"name": self.name, "end_of_turn": self.end_of_turn, "stop_strings": list(self.stop_strings)}


_REGISTRY: dict[str, type[Template]] = {}
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")


def register_template(name: str):
    """Class decorator: add a template to the registry under ``name`` (duplicates are refused)."""

    def decorate(cls: type[Template]) -> type[Template]:
        if not _NAME_PATTERN.match(name) or name == "auto":
            raise ValueError(f"template name {name!r} must be lowercase letters, digits, - or _ (and not 'auto')")
        if name in _REGISTRY:
            raise ValueError(f"template {name!r} is already registered by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def template_names() -> list[str]:
    """Every registered template name, plus "auto"."""
    return ["auto", *sorted(_REGISTRY)]


def resolve_template(name: str, tokenizer: PreTrainedTokenizerBase) -> Template:
    """The template called ``name`` for ``tokenizer``.

    "auto" is the tokenizer's own chat template when it has one, else ``alpaca``.
    Raises FtuneError for an unknown name (with a did-you-mean) or an unusable tokenizer.
    """
    if name == "auto":
        name = "chat" if getattr(tokenizer, "chat_template", None) else "alpaca"
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, template_names(), n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        raise FtuneError(f'data.template = "{name}": unknown template (expected one of '
                         f'{" | ".join(template_names())}).{hint}')
    return _REGISTRY[name](tokenizer)


def _require_eos(tokenizer: PreTrainedTokenizerBase | None, template: str) -> str:
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise FtuneError(f"data.template = {template}: the tokenizer has no EOS token to end each reply; "
                         "use data.template=chatml or a tokenizer with an eos_token")
    return eos


def _merged(segments: list[Segment]) -> list[Segment]:
    """Drop empty segments and join neighbours with the same flag (tokenized as one piece)."""
    out: list[Segment] = []
    for segment in segments:
        if not segment.text:
            continue
        if out and out[-1].trained == segment.trained:
            out[-1] = Segment(out[-1].text + segment.text, segment.trained)
        else:
            out.append(Segment(segment.text, segment.trained))
    return out


_NAMED_HINT = "use a named template: data.template=chatml|alpaca|plain"


@register_template("chat")
class TokenizerChatTemplate(Template):
    """The tokenizer's own ``chat_template``, split by rendering growing prefixes.

    For each assistant message i, ``before`` = the rendering of messages[:i] with the
    generation prompt and ``after`` = the rendering of messages[:i+1]; the reply is
    ``after[len(before):]``. This needs the template to render conversations as growing
    prefixes; templates that rewrite earlier turns are refused with a clear error.

    Note: some templates add text the conversation does not contain. SmolLM2's injects a
    default system prompt ("You are a helpful AI assistant named SmolLM...") when the first
    message is not a system message; that is the model's own format, so it is kept (untrained).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        super().__init__(tokenizer)
        if not getattr(tokenizer, "chat_template", None):
            raise FtuneError(f"data.template = chat: the tokenizer has no chat_template; {_NAMED_HINT}")
        self.end_of_turn = self._probe_end_of_turn()

    def _render(self, messages: list[Message], generation_prompt: bool) -> str:
        conversation = [{"role": m.role, "content": m.content} for m in messages]
        try:
            return self.tokenizer.apply_chat_template(conversation, tokenize=False,
                                                      add_generation_prompt=generation_prompt)
        except Exception as error:  # jinja raise_exception(...) in the template, e.g. role order
            raise FtuneError(f"the tokenizer's chat template refused this conversation: {error}") from error

    def _reply_piece(self, messages: list[Message], i: int, done: str) -> tuple[str, str]:
        """(untrained text since ``done``, text of reply i) -- checking the prefix property."""
        if i == 0:
            raise FtuneError("data.template = chat: a conversation cannot start with an assistant turn")
        before = self._render(messages[:i], generation_prompt=True)
        after = self._render(messages[: i + 1], generation_prompt=False)
        if not (before.startswith(done) and after.startswith(before)):
            raise FtuneError(
                f"the tokenizer's chat template does not render conversations as growing prefixes "
                f"(at message {i}), so the assistant tokens cannot be told apart; {_NAMED_HINT}")
        return before[len(done):], after[len(before):]

    def _probe_end_of_turn(self) -> str:
        reply = "Hello"
        _, piece = self._reply_piece([Message("user", "Hi"), Message("assistant", reply)], 1, "")
        start = piece.find(reply)  # in rendered text of a known probe, not in token ids
        marker = piece[start + len(reply):].strip() if start >= 0 else ""
        return marker or (getattr(self.tokenizer, "eos_token", None) or "")

    def _split_trailing_glue(self, piece: str) -> tuple[str, str]:
        # The reply ends at its end-of-turn marker; the whitespace after it is template glue.
        stripped = piece.rstrip()
        if self.end_of_turn and stripped.endswith(self.end_of_turn):
            return stripped, piece[len(stripped):]
        return piece, ""

    def render_segments(self, messages: list[Message]) -> list[Segment]:
        segments: list[Segment] = []
        done = ""
        for i, message in enumerate(messages):
            if message.role != "assistant":
                continue
            prompt_part, piece = self._reply_piece(messages, i, done)
            reply, glue = self._split_trailing_glue(piece)
            segments += [Segment(prompt_part, False), Segment(reply, True), Segment(glue, False)]
            done += prompt_part + piece
        full = self._render(messages, generation_prompt=False)
        if not full.startswith(done):
            raise FtuneError(f"the tokenizer's chat template rewrites earlier turns; {_NAMED_HINT}")
        segments.append(Segment(full[len(done):], False))
        return _merged(segments)

    def render_prompt(self, messages: list[Message]) -> str:
        return self._render(messages, generation_prompt=True)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "chat_template": self.tokenizer.chat_template}


@register_template("chatml")
class ChatML(Template):
    """``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message; no injected system prompt."""

    end_of_turn = "<|im_end|>"

    def render_segments(self, messages: list[Message]) -> list[Segment]:
        segments: list[Segment] = []
        for m in messages:
            if m.role == "assistant":
                segments += [Segment("<|im_start|>assistant\n", False),
                             Segment(m.content + self.end_of_turn, True), Segment("\n", False)]
            else:
                segments.append(Segment(f"<|im_start|>{m.role}\n{m.content}{self.end_of_turn}\n", False))
        return _merged(segments)

    def render_prompt(self, messages: list[Message]) -> str:
        return self.render_text(messages) + "<|im_start|>assistant\n"


ALPACA_PREAMBLE = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.")


@register_template("alpaca")
class Alpaca(Template):
    """The Stanford Alpaca prompt; each response ends with EOS (trained).

    A leading system message replaces the preamble sentence; further turns repeat the
    ``### Instruction:`` / ``### Response:`` blocks.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        super().__init__(tokenizer)
        self.end_of_turn = _require_eos(tokenizer, "alpaca")

    def render_segments(self, messages: list[Message]) -> list[Segment]:
        preamble, rest = ALPACA_PREAMBLE, list(messages)
        if rest and rest[0].role == "system":
            preamble, rest = rest[0].content, rest[1:]
        segments = [Segment(preamble, False)]
        for m in rest:
            sep = "\n\n" if any(s.text for s in segments) else ""
            if m.role == "user":
                segments.append(Segment(f"{sep}### Instruction:\n{m.content}", False))
            elif m.role == "assistant":
                segments += [Segment(f"{sep}### Response:\n", False), Segment(m.content + self.end_of_turn, True)]
            else:
                raise FtuneError("data.template = alpaca: a system message is only allowed as the first message")
        return _merged(segments)

    def render_prompt(self, messages: list[Message]) -> str:
        text = self.render_text(messages)
        return text + ("\n\n" if text else "") + "### Response:\n"


@register_template("plain")
class Plain(Template):
    """No markup: each user (or system) content + "\\n", each reply + EOS (trained)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        super().__init__(tokenizer)
        self.end_of_turn = _require_eos(tokenizer, "plain")

    def render_segments(self, messages: list[Message]) -> list[Segment]:
        return _merged([Segment(m.content + self.end_of_turn, True) if m.role == "assistant"
                        else Segment(m.content + "\n", False) for m in messages])

    def render_prompt(self, messages: list[Message]) -> str:
        return self.render_text(messages)
