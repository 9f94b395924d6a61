"""Read CSV, TSV, JSON and JSON Lines files (optionally gzipped) into records with line numbers.

Every record keeps the 1-based physical line where it starts, so a problem can be reported as
"line 42: ..." against the file as the user sees it in an editor. Rows that cannot be used are
collected as `BadRow`s instead of stopping the read; deciding how many are too many is the
caller's job (see `ftune.data.classification`).

Quoting: `.csv` files use standard CSV quoting (fields in double quotes, `""` escapes, quoted
fields may span lines). `.tsv` files are read without any quote handling, as the TSV format
(IANA text/tab-separated-values) and GLUE/SST-2 files define it: a `"` is an ordinary
character, so a stray quote in a sentence cannot swallow the following lines. Pass
`quoting="csv"` for a TSV written with CSV quoting (e.g. pandas `to_csv(sep="\\t")`).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from ftune.data.json_tables import read_json_table, read_jsonl_table
from ftune.data.table import BadRow, Record, Table
from ftune.errors import DataError

__all__ = ["BadRow", "Record", "Table", "file_format", "is_number", "read_table"]

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl", ".ndjson")
HEADER_SAMPLE_ROWS = 200
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


def file_format(path: str | Path) -> tuple[str, bool]:
    """Return (format, gzipped) for a path by its extension, or raise DataError."""
    name = Path(path).name.lower()
    gzipped = name.endswith(".gz")
    suffix = Path(name[:-3] if gzipped else name).suffix
    if suffix not in SUPPORTED_EXTENSIONS:
        raise DataError(
            f'{path}: unsupported file type "{suffix or Path(path).name}"; supported: '
            f"{', '.join(SUPPORTED_EXTENSIONS)}, each optionally gzipped (e.g. .csv.gz)"
        )
    return ("jsonl" if suffix == ".ndjson" else suffix[1:]), gzipped


def read_table(
    path: str | Path,
    *,
    delimiter: str | None = None,
    header: bool | None = None,
    quoting: str | None = None,
) -> Table:
    """Read a .csv/.tsv/.json/.jsonl/.ndjson file (or its .gz) into a `Table`.

    `delimiter` (default by extension), `header` (None = detect) and `quoting` ("csv" or
    "none"; default "csv" for .csv and "none" for .tsv) apply to delimited files only.
    Unusable rows become `BadRow`s; a file that cannot be read at all raises DataError.
    """
    fmt, gzipped = file_format(path)
    shown = str(path)
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            if fmt == "json":
                return read_json_table(f.read(), shown)
            bad_rows: list[BadRow] = []
            lines = _decoded_lines(f, shown, bad_rows)
            if fmt == "jsonl":
                return read_jsonl_table(lines, shown, bad_rows)
            return _read_delimited(lines, shown, fmt, bad_rows, delimiter, header, quoting)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a data file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file ({e or 'truncated'})") from None


def _decoded_lines(f: BinaryIO, path: str, bad_rows: list[BadRow]) -> Iterator[tuple[int, str]]:
    """Yield (physical line number, text); undecodable lines become BadRows, numbers don't shift."""
    for number, raw in enumerate(f, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            bad_rows.append(BadRow(path, number, "undecodable bytes (not UTF-8)"))


def _read_delimited(
    lines: Iterable[tuple[int, str]],
    path: str,
    fmt: str,
    bad_rows: list[BadRow],
    delimiter: str | None,
    header: bool | None,
    quoting: str | None,
) -> Table:
    if delimiter == "\\t":  # a tab typed on a command line often arrives as backslash-t
        delimiter = "\t"
    delimiter = delimiter or ("\t" if fmt == "tsv" else ",")
    if len(delimiter) != 1:
        raise DataError(f"{path}: delimiter must be one character, got {delimiter!r}")
    quoting = quoting or ("none" if fmt == "tsv" else "csv")
    if quoting not in ("csv", "none"):
        raise DataError(f'{path}: quoting must be "csv" or "none", got {quoting!r}')

    physical: list[int] = []  # physical line number of each line handed to csv.reader

    def texts() -> Iterator[str]:
        for number, text in lines:
            physical.append(number)
            yield text

    reader = csv.reader(
        texts(),
        delimiter=delimiter,
        quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL,
    )
    rows: list[tuple[int, int, list[str]]] = []  # (start line, end line, fields)
    while True:
        consumed = reader.line_num
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # e.g. a field over csv's size limit; the reader resumes after it
            bad_rows.append(BadRow(path, physical[consumed], f"unreadable row ({e})"))
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line: not a row
        rows.append((physical[consumed], physical[reader.line_num - 1], fields))

    if header is None:
        header = bool(rows) and _looks_like_header([r[2] for r in rows])
    columns = _column_names(path, rows.pop(0)[2]) if header and rows else None
    if columns is not None:
        expected = len(columns)
    else:
        expected = Counter(len(r[2]) for r in rows).most_common(1)[0][0] if rows else 0

    records: list[Record] = []
    for start, end, fields in rows:
        if len(fields) != expected:
            reason = f"expected {expected} fields, found {len(fields)}"
            if end > start:  # an unclosed quote makes one "record" of many lines
                reason += f" (record spans lines {start}-{end}; an unbalanced double quote?)"
            bad_rows.append(BadRow(path, start, reason))
        elif columns is None:
            records.append(Record(start, fields))
        else:
            records.append(Record(start, dict(zip(columns, fields))))
    bad_rows.sort(key=lambda b: b.line)
    return Table(path, columns, records, bad_rows, len(records) + len(bad_rows), fmt)


def is_number(text: str) -> bool:
    """True for a plain decimal number such as "3", "-0.5" or "1e-3" (spaces around allowed)."""
    return _NUMBER.fullmatch(text.strip()) is not None


def _looks_like_header(rows: list[list[str]]) -> bool:
    """Decide whether rows[0] names the columns (like csv.Sniffer.has_header, but predictable)."""
    first, sample = rows[0], rows[1 : 1 + HEADER_SAMPLE_ROWS]
    votes = 0
    for j, cell in enumerate(first):
        values = [r[j].strip() for r in sample if len(r) > j and r[j].strip()]
        if is_number(cell):
            votes -= 1  # a column name is never a number
        elif values and all(is_number(v) for v in values):
            votes += 1  # a word above a column of numbers
    if votes:
        return votes > 0
    cells = [c.strip() for c in first]
    if len(set(cells)) != len(cells) or not all(_IDENTIFIER.fullmatch(c) for c in cells):
        return False
    # A column name does not reappear among that column's values ("positive" above "negative").
    return not any(
        len(r) > j and r[j].strip() == cells[j] for r in sample for j in range(len(cells))
    )


def _column_names(path: str, cells: list[str]) -> list[str]:
    # pandas writes an empty name for the index column; give it a usable one.
    names = [c.strip() or f"column_{i}" for i, c in enumerate(cells)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(
            f"{path}: the header row names a column more than once: "
            + ", ".join(f'"{n}"' for n in duplicates)
        )
    return names
