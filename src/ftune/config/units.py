"""Sizes written the way people write them: ``16GB``, ``900 MB``, ``16G``, or a number of GB."""

from __future__ import annotations

import re

_UNITS = {"": 2**30, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory_size(text: str | float | int) -> float:
    """Bytes; a bare number means gigabytes. ``ValueError`` for anything else."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) * _UNITS["G"]
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a memory size such as 16GB or 900MB")
    return float(match.group(1)) * _UNITS[match.group(2).upper()]
