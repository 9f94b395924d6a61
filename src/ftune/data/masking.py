"""Token ids and labels from a template's segments.

Each segment is tokenized on its own (``add_special_tokens=False``) and the pieces are
concatenated, so every token knows whether it is trained from the segment it came from. Labels
are -100 for untrained tokens; they are never derived by comparing ids with the pad id
(SmolLM2's pad id *is* its EOS id, and EOS must be trained so the model learns to stop).

BOS: SmolLM2's tokenizer adds nothing to plain text (its BOS ``<|im_start|>`` only appears
because the chat markup contains it), while Llama-style tokenizers prepend ``<s>`` /
``<|begin_of_text|>`` through their post-processor. We prepend the BOS id only when the
tokenizer would add it by itself and the rendered text does not already start with it (many
chat templates write ``{{ bos_token }}`` themselves), so there is never a double BOS.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ftune.data.conversation import Message
from ftune.data.templates import Template
from ftune.errors import FtuneError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100


@dataclass
class EncodedExample:
    """Token ids with labels (-100 where not trained); ``truncated`` if cut to max_length."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def num_trained(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when ``tokenizer(text)`` prepends the BOS id by itself (Llama-style tokenizers)."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    with_special = tokenizer("a")["input_ids"]
    return bool(with_special) and with_special[0] == bos_id and _ids(tokenizer, "a")[:1] != [bos_id]


def _bos_prefix(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    bos = getattr(tokenizer, "bos_token", None)
    if adds_bos(tokenizer) and not (bos and text.startswith(bos)):
        return [tokenizer.bos_token_id]
    return []


# Tokenizers already checked for clean joins between separately tokenized segments.
_JOIN_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _warn_if_segments_do_not_join(tokenizer: PreTrainedTokenizerBase) -> None:
    # SentencePiece-style tokenizers that prepend "▁" to every encoded text (e.g. Llama 2 with
    # legacy Metaspace) would put a space at every segment boundary; say so once.
    try:
        if tokenizer in _JOIN_CHECKED:
            return
        _JOIN_CHECKED[tokenizer] = True
    except TypeError:
        return
    joined = tokenizer.decode(_ids(tokenizer, "a:\n") + _ids(tokenizer, "b"))
    if joined != "a:\nb":
        warnings.warn(f"this tokenizer changes text at segment boundaries ({joined!r} != 'a:\\nb'): "
                      "separately tokenized prompt and reply may differ slightly from the rendered text",
                      stacklevel=3)


def _truncate(ids: list[int], labels: list[int], max_length: int) -> EncodedExample:
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    # Keep the beginning: the prompt gives the reply its meaning; a cut reply loses its EOS.
    truncated = len(ids) > max_length
    return EncodedExample(ids[:max_length], labels[:max_length], truncated)


def encode_conversation(messages: list[Message], template: Template, tokenizer: PreTrainedTokenizerBase,
                        max_length: int) -> EncodedExample:
    """Tokenize a conversation; only assistant replies and their end-of-turn tokens are trained.

    Truncates from the end to ``max_length`` tokens (``truncated=True``); labels stay aligned.
    """
    _warn_if_segments_do_not_join(tokenizer)
    segments = template.render_segments(messages)
    ids = _bos_prefix(tokenizer, segments[0].text if segments else "")
    labels = [IGNORE_INDEX] * len(ids)
    for segment in segments:
        piece = _ids(tokenizer, segment.text)
        ids += piece
        labels += piece if segment.trained else [IGNORE_INDEX] * len(piece)
    return _truncate(ids, labels, max_length)


def encode_plain_text(text: str, tokenizer: PreTrainedTokenizerBase, max_length: int) -> EncodedExample:
    """Tokenize text for continued pre-training: every token trained, EOS appended and trained."""
    eos_id = getattr(tokenizer, "eos_token_id", None)
    if eos_id is None:
        raise FtuneError("plain-text training needs a tokenizer with an eos_token to end each document")
    bos = _bos_prefix(tokenizer, text)
    body = _ids(tokenizer, text) + [eos_id]
    return _truncate(bos + body, [IGNORE_INDEX] * len(bos) + body, max_length)


def encode_prompt(messages: list[Message], template: Template, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids a model continues to generate the next assistant reply."""
    text = template.render_prompt(messages)
    return _bos_prefix(tokenizer, text) + _ids(tokenizer, text)


_GREEN, _RESET = "\x1b[1;32m", "\x1b[0m"


def render_inspection(encoded: EncodedExample, tokenizer: PreTrainedTokenizerBase, color: bool = True) -> str:
    """The decoded example with trained spans marked (green, or ``[[...]]``), then the counts."""
    parts: list[str] = []
    start = 0
    ids, labels = encoded.input_ids, encoded.labels
    for end in range(1, len(ids) + 1):
        if end == len(ids) or (labels[end] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
            text = tokenizer.decode(ids[start:end], skip_special_tokens=False)
            if labels[start] != IGNORE_INDEX:
                text = f"{_GREEN}{text}{_RESET}" if color else f"[[{text}]]"
            parts.append(text)
            start = end
    trained = encoded.num_trained
    lines = ["".join(parts)]
    if encoded.truncated:
        lines.append(f"(truncated to {len(ids)} tokens)")
    lines.append(f"trained tokens: {trained} / {len(ids)} (masked: {len(ids) - trained})")
    return "\n".join(lines)
