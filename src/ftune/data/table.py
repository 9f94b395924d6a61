"""What a data file reads into: records with the line each starts on, and the rows that
could not be used, with why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BadRow:
    """A row that was skipped: the file, the 1-based line where it starts, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Record:
    """One usable row: a list of fields (headerless delimited file) or a dict (otherwise)."""

    line: int
    values: list[str] | dict[str, object]


@dataclass
class Table:
    """The rows of one file. `columns` is None for a headerless delimited file."""

    path: str
    columns: list[str] | None
    records: list[Record]
    bad_rows: list[BadRow]
    total_rows: int
    format: str  # "csv", "tsv", "json" or "jsonl": JSON records have no column positions
