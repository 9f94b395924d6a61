"""The fields of OpenAI request bodies, checked one by one: a bad one is a 400 that names it."""

from __future__ import annotations

from typing import Any

from ftune.serving.errors import ApiError
from ftune.serving.sampling import Sampling


def field(body: dict[str, Any], name: str, kinds, default=None, *, required: bool = False):
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, f"Missing required parameter: {name!r}", param=name, code="missing_required_parameter")
        return default
    value = body[name]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ApiError(400, f"{name}: expected {_names(kinds)}, got a boolean", param=name)
    if not isinstance(value, kinds):
        raise ApiError(400, f"{name}: expected {_names(kinds)}, got {type(value).__name__}", param=name)
    return value


def _names(kinds) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join({int: "an integer", float: "a number", str: "a string", list: "a list", bool: "a boolean",
                        dict: "an object"}.get(k, k.__name__) for k in kinds)


def sampling_of(body: dict[str, Any], max_tokens_cap: int) -> Sampling:
    max_tokens = field(body, "max_completion_tokens", int) or field(body, "max_tokens", int, 256)
    if not 1 <= max_tokens <= max_tokens_cap:
        raise ApiError(400, f"max_tokens = {max_tokens}: must be between 1 and {max_tokens_cap} on this server",
                       param="max_tokens")
    temperature = float(field(body, "temperature", (int, float), 1.0))
    if not 0 <= temperature <= 2:
        raise ApiError(400, f"temperature = {temperature}: must be between 0 and 2", param="temperature")
    top_p = float(field(body, "top_p", (int, float), 1.0))
    if not 0 < top_p <= 1:
        raise ApiError(400, f"top_p = {top_p}: must be above 0 and at most 1", param="top_p")
    stop = field(body, "stop", (str, list), ())
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise ApiError(400, "stop: a string or a list of up to 4 strings", param="stop")
    if field(body, "n", int, 1) != 1:
        raise ApiError(400, "n: this server returns one choice per request", param="n")
    return Sampling(max_tokens, temperature, top_p, field(body, "seed", int), stop)


def texts_of(body: dict[str, Any], name: str = "input") -> list[str]:
    value = field(body, name, (str, list), required=True)
    texts = [value] if isinstance(value, str) else value
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, f"{name}: a string or a non-empty list of strings", param=name)
    return texts
