"""One setting as the user gave it, and where: the origin every config error names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Setting:
    """One value as the user gave it, and where."""

    value: Any
    origin: str  # "my.yaml:12" or "override 'train.epochs=3'"
