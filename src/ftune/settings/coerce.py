"""A setting's value checked and converted to the type its schema field declares; the error
says what was expected in words ("a whole number", "one of: cpu, cuda, auto")."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal


def coerce(value: Any, expected: Any) -> tuple[Any, str | None]:
    """Check ``value`` against a type hint; return (value, None) or (None, message)."""
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        if value is None or value == "":
            if type(None) in args:
                return None, None
        errors = []
        # Prefer the member the value already is (0 stays an int in ``str | int``).
        members = sorted((a for a in args if a is not type(None)),
                         key=lambda a: not (isinstance(a, type) and type(value) is a))
        for arg in members:
            result, error = coerce(value, arg)
            if error is None:
                return result, None
            errors.append(error)
        return None, " or ".join(dict.fromkeys(errors))
    if origin is Literal:
        if value in args:
            return value, None
        return None, "must be one of " + ", ".join(str(a) for a in args) + did_you_mean(str(value), [str(a) for a in args])
    if origin is list:
        items = value if isinstance(value, list) else [value]
        (item_type,) = args
        out = []
        for item in items:
            result, error = coerce(item, item_type)
            if error:
                return None, f"a list of {_type_name(item_type)} ({error})"
            out.append(result)
        return out, None
    if expected is bool:
        return (value, None) if isinstance(value, bool) else (None, "must be true or false")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        return None, "must be a whole number"
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), None
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value), None
            except ValueError:
                pass
        return None, "must be a number"
    if expected is str:
        if isinstance(value, str):
            return value, None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value), None
        return None, "must be a string"
    if origin is dict or expected is dict:
        if not isinstance(value, dict):
            return None, "must be a mapping, e.g. {0: negative, 1: positive}"
        if not args:
            return value, None
        out = {}
        for key, item in value.items():
            (key, key_error), (item, item_error) = coerce(key, args[0]), coerce(item, args[1])
            if key_error or item_error:
                return None, f"mapping entry {key!r}: {key_error or item_error}"
            out[key] = item
        return out, None
    return value, None


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    return {str: "strings", int: "whole numbers", float: "numbers", bool: "booleans"}.get(hint, str(hint))


def did_you_mean(word: str, candidates: list[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f' Did you mean "{prefix}{match[0]}"?' if match else ""
