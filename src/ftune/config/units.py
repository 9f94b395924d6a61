"""Sizes and intervals written the way people write them: ``16GB``, ``900 MB``, ``16G`` or a
number of GB; ``200`` steps or ``10m``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"": 2**30, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory_size(text: str | float | int) -> float:
    """Bytes; a bare number means gigabytes. ``ValueError`` for anything else."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) * _UNITS["G"]
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a memory size such as 16GB or 900MB")
    return float(match.group(1)) * _UNITS[match.group(2).upper()]


@dataclass(frozen=True)
class CheckpointInterval:
    """Every ``steps`` optimizer steps, or every ``seconds`` of training; neither = never."""

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | int | bool | None) -> "CheckpointInterval":
        """``200`` (steps), ``10m`` / ``10min`` / ``0.5 minutes`` (minutes), empty or ``off``."""
        if text is None or text is False or str(text).strip().lower() in ("", "off", "none", "never", "false"):
            return cls()  # YAML reads a bare off as false
        value = str(text).strip().lower()
        if re.fullmatch(r"\d+", value) and int(value) >= 1:
            return cls(steps=int(value))
        match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(m|min|mins|minute|minutes)", value)
        if match and float(match.group(1)) > 0:
            return cls(seconds=float(match.group(1)) * 60)
        raise ValueError(f"{text!r} is neither a number of steps (200) nor of minutes (10m)")

    @property
    def enabled(self) -> bool:
        return bool(self.steps or self.seconds)

    def describe(self) -> str:
        if self.steps:
            return f"every {self.steps} steps"
        return f"every {self.seconds / 60:g} minutes" if self.seconds else "off"
