"""The interface every generative data format implements, and the registry that holds them.

A format is one small module: the keys its rows have, how a row becomes an `Example`
(`parse`), and how an example becomes a row again (`to_record`, for conversion). A row that
cannot be used raises `RowProblem` with the reason the user will read next to its line number.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ftune.data.conversation import Example
from ftune.errors import DataError

# Bookkeeping keys many exports carry; their presence should not hide the format.
TOLERATED_KEYS = frozenset({"id"})
KINDS = ("sft", "preference")
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")
_RESERVED = ("auto",)  # means "detect", so no format may take it
# Names people use for these formats elsewhere: suggested, never silently accepted.
_COMMON_NAMES = {"openai": "chat", "messages": "chat", "conversational": "chat", "dpo": "preference",
                 "anthropic": "hh", "completion": "prompt_completion", "plain": "text"}


class RowProblem(Exception):
    """A row that cannot be used; the message is the reason shown beside its line number."""


class DataFormat:
    """Base class: subclasses set the class attributes and implement `parse` and `to_record`."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "sft" (Conversation or PlainText) or "preference" (PreferencePair)
    description: ClassVar[str]
    required_keys: ClassVar[frozenset[str]]
    optional_keys: ClassVar[frozenset[str]] = frozenset()

    def matches(self, keys: set[str]) -> bool:
        """True when a record with these keys is in this format: every required key and no
        key this format does not know (other than tolerated bookkeeping keys such as "id")."""
        allowed = self.required_keys | self.optional_keys | TOLERATED_KEYS
        return self.required_keys <= keys and keys <= allowed

    def parse(self, values: dict[str, Any]) -> Example:
        """The example of one record; raises `RowProblem` when the row cannot be used."""
        raise NotImplementedError

    def to_record(self, example: Example) -> dict[str, Any]:
        """The record of one example (the inverse of `parse`); raises `RowProblem` when this
        format cannot represent it."""
        raise NotImplementedError

    def keys_summary(self) -> str:
        """The keys for messages, e.g. "instruction, output (+ input)"."""
        text = ", ".join(sorted(self.required_keys))
        if self.optional_keys:
            text += f" (+ {', '.join(sorted(self.optional_keys))})"
        return text


_REGISTRY: dict[str, DataFormat] = {}


def register_format(name: str):
    """Class decorator: add a format to the registry under `name` (one instance, stateless)."""

    def decorate(cls: type[DataFormat]) -> type[DataFormat]:
        if not _NAME_PATTERN.match(name) or name in _RESERVED:
            raise ValueError(f"format name {name!r} must be lowercase letters, digits, - or _ "
                             f"and not {', '.join(_RESERVED)}")
        if name in _REGISTRY:
            raise ValueError(f"format {name!r} is already registered by "
                             f"{type(_REGISTRY[name]).__module__}")
        if getattr(cls, "kind", None) not in KINDS:
            raise TypeError(f"{cls.__name__}.kind must be one of {', '.join(KINDS)}")
        if not isinstance(getattr(cls, "required_keys", None), frozenset) or not cls.required_keys:
            raise TypeError(f"{cls.__name__}.required_keys must be a non-empty frozenset")
        cls.name = name
        _REGISTRY[name] = cls()
        return cls

    return decorate


def format_names() -> list[str]:
    """The names of every registered format, sorted."""
    _import_builtin_formats()
    return sorted(_REGISTRY)


def get_format(name: str, *, setting: str = "data.format") -> DataFormat:
    """The registered format called `name`; DataError (with a did-you-mean) when there is none."""
    _import_builtin_formats()
    if name in _REGISTRY:
        return _REGISTRY[name]
    import difflib  # only on this error path

    text = str(name).lower()
    close = [_COMMON_NAMES[text]] if text in _COMMON_NAMES else []
    close = close or [n for n in sorted(_REGISTRY) if text.startswith(n) or n.startswith(text)]
    close = close or difflib.get_close_matches(text, list(_REGISTRY), n=1)
    hint = f' Did you mean "{close[0]}"?' if close else ""
    raise DataError(f'{setting} = "{name}": unknown format.{hint} Known formats: auto, '
                    f"{', '.join(sorted(_REGISTRY))}")


def registered_formats() -> list[DataFormat]:
    """Every registered format, by name."""
    _import_builtin_formats()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def _import_builtin_formats() -> None:
    from ftune.discovery import import_submodules

    import_submodules("ftune.data.formats")  # each module's @register_format adds its format


# Helpers the format modules share.


def json_type(value: object) -> str:
    """How a JSON value is named in messages: "a string", "an array", "null", ..."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


def text_field(values: dict[str, Any], key: str, hint: str, *, required: bool = True) -> str:
    """The string at `key`, unchanged; RowProblem if it is missing, empty or not a string.

    An optional key that is absent, null or blank gives "". `hint` says what rows of this
    format need, e.g. "alpaca rows need instruction and output".
    """
    value = values.get(key)
    if not required and (value is None or (isinstance(value, str) and not value.strip())):
        return ""
    if key not in values:
        raise RowProblem(f'missing "{key}" ({hint})')
    if not isinstance(value, str):
        raise RowProblem(f'"{key}" is {json_type(value)}, expected a string ({hint})')
    if not value.strip():
        raise RowProblem(f'empty "{key}" ({hint})')
    return value

