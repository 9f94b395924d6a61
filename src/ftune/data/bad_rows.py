"""The one layout for reporting skipped rows, shared by every kind of data."""

from __future__ import annotations

from typing import Sequence

from ftune.data.readers import BadRow

BAD_ROWS_SHOWN = 20


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def bad_row_lines(bad_rows: Sequence[BadRow], limit: int = BAD_ROWS_SHOWN) -> list[str]:
    """``  line 42   reason`` for the first ``limit`` bad rows by line, then "... and N more"."""
    shown = sorted(bad_rows, key=lambda b: b.line)[:limit]
    if not shown:
        return []
    width = max(len(f"line {b.line}") for b in shown) + 2
    out = [f"  {f'line {b.line}':<{width}}{b.reason}" for b in shown]
    if len(bad_rows) > limit:
        out.append(f"  ... and {len(bad_rows) - limit:,} more")
    return out
