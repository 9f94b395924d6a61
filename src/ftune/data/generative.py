"""Generative training data (SFT and preference): load a file in any registered format, keep
the bad rows with their lines, convert between formats, and summarize without a tokenizer.

Like the classification loader, a file with no usable row, or with more bad rows than
`data.max_bad_fraction`, stops the run before anything heavy is loaded.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftune.data.conversation import Conversation, Example, PlainText, PreferencePair
from ftune.data.bad_rows import BAD_ROWS_SHOWN, bad_row_lines, percent
from ftune.data.formats import DataFormat, RowProblem, get_format, registered_formats
from ftune.data.readers import BadRow, Record, read_table
from ftune.errors import DataError

DETECTION_SAMPLE_ROWS = 50


@dataclass
class GenerativeExamples:
    """The usable examples of one file, the line each came from, and the rows skipped."""

    path: str
    format: str
    kind: str  # "sft" or "preference"
    examples: list[Example]
    lines: list[int]
    bad_rows: list[BadRow]
    total_rows: int
    max_bad_fraction: float  # the limit it was loaded with, for format_generative_bad_rows


def load_generative_file(
    path: str | Path, *, format: str = "auto", max_bad_fraction: float = 0.05, format_setting: str = "data.format"
) -> GenerativeExamples:
    """Read a .json/.jsonl/.csv/.tsv file (or its .gz) of generative examples.

    `format` names a registered format, or "auto" to detect it from the records' keys (exactly
    one format must fit, else DataError asking for `data.format`). Rows that cannot be used
    are kept as `bad_rows`; DataError when none is usable or more than `max_bad_fraction` are.
    """
    shown = str(path)
    fmt = None if format == "auto" else get_format(format)  # a typo fails before the read
    table = read_table(path, header=True)  # flat formats in CSV/TSV need the keys as a header
    if not table.records:
        raise _no_rows_error(shown, table.total_rows, table.bad_rows)
    if fmt is None:
        fmt = detect_format(table.records[:DETECTION_SAMPLE_ROWS], path=shown, format_setting=format_setting)

    examples, lines, bad_rows = [], [], list(table.bad_rows)
    for record in table.records:
        try:
            examples.append(fmt.parse(record.values))  # type: ignore[arg-type]
            lines.append(record.line)
        except RowProblem as e:
            bad_rows.append(BadRow(shown, record.line, str(e)))
    bad_rows.sort(key=lambda b: b.line)

    total = table.total_rows
    if not examples:
        raise _no_rows_error(shown, total, bad_rows, fmt.name)
    if len(bad_rows) / total > max_bad_fraction:
        raise DataError(
            f"{shown}: {len(bad_rows):,} of {total:,} rows are bad as {fmt.name} data "
            f"({percent(len(bad_rows) / total)}, over data.max_bad_fraction="
            f"{max_bad_fraction * 100:g}%)\n" + "\n".join(bad_row_lines(bad_rows))
        )
    return GenerativeExamples(
        shown, fmt.name, fmt.kind, examples, lines, bad_rows, total, max_bad_fraction
    )


def detect_format(records: Sequence[Record], *, path: str = "", format_setting: str = "data.format") -> DataFormat:
    """The one format whose keys fit the records (records fitting none are ignored here and
    become bad rows later); DataError listing the keys and formats when none or several fit."""
    formats = registered_formats()
    matched: dict[str, list[int]] = {}  # format name -> lines of the records it fits
    keys_seen: dict[str, int] = {}  # key -> records having it, in first-seen order
    for record in records:
        keys = set(record.values)  # header=True: always a dict
        for key in record.values:
            keys_seen[key] = keys_seen.get(key, 0) + 1
        for fmt in formats:
            if fmt.matches(keys):
                matched.setdefault(fmt.name, []).append(record.line)
    if len(matched) == 1:
        return get_format(next(iter(matched)))

    where = f"{path}: " if path else ""
    found = ", ".join(f'"{k}" ({n})' for k, n in keys_seen.items())
    if matched:
        mixed = "; ".join(f"{name} ({_lines(at)})" for name, at in matched.items())
        head = f"{where}rows in different formats: {mixed}"
    else:
        head = f"{where}cannot tell the data format: no format has exactly these keys"
        every = set(keys_seen)
        partial = [f.name for f in formats if f.required_keys <= every]
        if partial:  # e.g. alpaca rows with an extra rendered "text" key
            head += f" (all the keys of {', '.join(partial)} are there, with others)"
    listing = [f"  {f.name:<18} {f.keys_summary():<32} {f.description}" for f in formats]
    raise DataError(
        f"{head}\n  keys found in the first {len(records)} rows (rows with each): {found}\n"
        f"  Set {format_setting} to one of these (extra keys are then ignored):\n" + "\n".join(listing)
    )


def format_generative_bad_rows(examples: GenerativeExamples, limit: int = BAD_ROWS_SHOWN) -> str:
    """The user-facing report of skipped rows ("" when there are none), first `limit` by line."""
    bad = examples.bad_rows
    if not bad:
        return ""
    head = (
        f"{examples.path}: {len(bad):,} of {examples.total_rows:,} rows skipped "
        f"({percent(len(bad) / examples.total_rows)}, limit data.max_bad_fraction="
        f"{examples.max_bad_fraction * 100:g}%)"
    )
    return "\n".join([head, *bad_row_lines(bad, limit)])


def convert_examples(examples: GenerativeExamples, to: str = "chat") -> list[dict[str, Any]]:
    """The examples as records of format `to` (default: OpenAI chat), in file order.

    DataError when the kinds differ (a preference pair has two replies, a conversation one) or
    when the first example `to` cannot represent is found, naming its line.
    """
    target = get_format(to, setting="to")
    if examples.kind != target.kind:
        suggest = "preference" if examples.kind == "preference" else "chat"
        why = ("a preference pair has two replies to choose from, a conversation has one"
               if examples.kind == "preference" else
               "a preference format needs a chosen and a rejected reply, a conversation has one")
        same_kind = ", ".join(f.name for f in registered_formats() if f.kind == examples.kind)
        raise DataError(f'{examples.path}: cannot convert {examples.format} data to "{to}": {why}. '
                        f'Use to="{suggest}" (formats for {examples.kind} data: {same_kind})')
    records = []
    for example, line in zip(examples.examples, examples.lines):
        try:
            records.append(target.to_record(example))
        except RowProblem as e:
            raise DataError(f'{examples.path}: line {line}: cannot convert to "{to}": {e}') from None
    return records


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write one JSON object per line (gzipped when the name ends in .gz), atomically: a
    reader never sees a half-written file, and a failure leaves any old file untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            stream = gzip.GzipFile(fileobj=raw, mode="wb") if path.name.endswith(".gz") else raw
            with stream:
                for record in records:
                    stream.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def dataset_stats_basic(examples: GenerativeExamples) -> dict[str, Any]:
    """Tokenizer-free statistics of loaded examples.

    turns: messages per example (a preference pair counts its prompt plus one reply; None for
    plain text). chars: characters per example (a pair: its prompt plus the longer reply, the
    longest sequence it yields); p95 is the nearest-rank percentile. duplicates: examples whose
    content (roles and whitespace-normalized text) equals an earlier example's.
    """
    turns = [_turns(e) for e in examples.examples if not isinstance(e, PlainText)]
    chars = sorted(_chars(e) for e in examples.examples)
    distinct = {_normalized(e) for e in examples.examples}
    return {
        "path": examples.path,
        "format": examples.format,
        "kind": examples.kind,
        "rows": len(examples.examples),
        "bad_rows": len(examples.bad_rows),
        "total_rows": examples.total_rows,
        "turns": _summary(turns, ("min", "mean", "max")) if turns else None,
        "chars": _summary(chars, ("min", "mean", "median", "p95", "max")) if chars else None,
        "duplicates": len(examples.examples) - len(distinct),
    }


def _turns(example: Example) -> int:
    if isinstance(example, Conversation):
        return len(example.messages)
    return len(example.prompt) + 1  # type: ignore[union-attr]


def _chars(example: Example) -> int:
    if isinstance(example, PlainText):
        return len(example.text)
    if isinstance(example, PreferencePair):
        prompt = sum(len(m.content) for m in example.prompt)
        return prompt + max(len(example.chosen), len(example.rejected))
    return sum(len(m.content) for m in example.messages)


def _normalized(example: Example) -> tuple:
    def norm(text: str) -> str:
        return " ".join(text.split())

    if isinstance(example, PlainText):
        return ("text", norm(example.text))
    if isinstance(example, PreferencePair):
        prompt = tuple((m.role, norm(m.content)) for m in example.prompt)
        return ("pair", prompt, norm(example.chosen), norm(example.rejected))
    return ("chat", tuple((m.role, norm(m.content)) for m in example.messages))


def _summary(values: list[int], keys: tuple[str, ...]) -> dict[str, float]:
    ordered = sorted(values)
    n = len(ordered)
    every = {
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 2),
        "median": statistics.median(ordered),
        "p95": ordered[-(-95 * n // 100) - 1],  # nearest rank: ceil(0.95 n)-th value
        "max": ordered[-1],
    }
    return {k: every[k] for k in keys}


def _lines(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
    s = "s" if len(lines) > 1 else ""
    return f"{len(lines)} row{s}: line{s} {shown}"


def _no_rows_error(path: str, total: int, bad_rows: Sequence[BadRow], fmt: str = "") -> DataError:
    detail = f"all {total:,} rows are bad" if total else "no data rows"
    detail += f" as {fmt} data" if fmt and total else ""
    return DataError("\n".join([f"{path}: {detail}", *bad_row_lines(bad_rows)]))





def detect_file_format(path: str | Path) -> str | None:
    """The generative format of a file, or None when no generative format fits its rows
    (a labeled classification file, for instance). Several fitting formats raise DataError."""
    table = read_table(path, header=True)
    sample = table.records[:DETECTION_SAMPLE_ROWS]
    if not any(fmt.matches(set(r.values)) for r in sample for fmt in registered_formats()):
        return None
    return detect_format(sample, path=str(path)).name
