"""Labeled examples for text classification: pick the text and label columns, drop bad rows.

Columns are chosen by name or 0-based position, or detected when the choice is unambiguous.
Every dropped row is kept as a `BadRow` with its line, so the user can fix the file; too many
of them (over `data.max_bad_fraction`) stops the run before anything heavy is loaded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ftune.data.bad_rows import bad_row_lines, percent
from ftune.data.columns import (MISSING, Column, cell, column_keys, detect_label_column, detect_text_columns,
                                resolve_column, show_column)
from ftune.data.readers import BadRow, Record, read_table
from ftune.errors import DataError


@dataclass
class LabeledExamples:
    """Texts and their labels (as strings, stripped), with the line each row came from."""

    path: str
    texts: list[str]
    labels: list[str]
    lines: list[int]
    bad_rows: list[BadRow]
    total_rows: int
    text_columns: list[Column]
    label_column: Column
    max_bad_fraction: float = 0.05  # the limit it was loaded with, for format_bad_rows
    notices: list[str] | None = None  # e.g. label spellings merged


def load_labeled_file(
    path: str | Path,
    *,
    text_columns: list[Column] | Column | None = None,
    label_column: Column | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
    text_separator: str = "\n",
    allowed_labels: list[str] | None = None,
    max_bad_fraction: float = 0.05,
) -> LabeledExamples:
    """Read a classification file into `LabeledExamples`.

    Columns are names (header or JSON) or 0-based positions (delimited files); None detects
    them when unambiguous, otherwise raises DataError naming `data.label_column` /
    `data.text_columns`. Several text columns are joined with `text_separator`. Raises
    DataError when no row is usable or more than `max_bad_fraction` of the rows are bad.
    """
    table = read_table(path, delimiter=delimiter, header=header)
    shown = str(path)
    if not table.records:
        raise _no_rows_error(shown, table.total_rows, table.bad_rows)
    keys = column_keys(table)

    texts_given = [text_columns] if isinstance(text_columns, (str, int)) else text_columns
    text_keys = [resolve_column(table, keys, c, "data.text_columns") for c in texts_given or []]
    label_key = (
        resolve_column(table, keys, label_column, "data.label_column")
        if label_column is not None
        else detect_label_column(table, keys, exclude=text_keys)
    )
    if label_key in text_keys:
        raise DataError(f"{shown}: column {show_column(label_key)} is both the label and a text column")
    if not text_keys:
        text_keys = detect_text_columns(table, keys, label_key)

    allowed = ({spelling_key(str(a)): str(a).strip() for a in allowed_labels}
               if allowed_labels is not None else None)
    where = "key" if table.format in ("json", "jsonl") else "column"
    texts, labels, lines, bad_rows = [], [], [], list(table.bad_rows)
    for record in table.records:
        parts, label, problems = _check_row(record, text_keys, label_key, where, allowed)
        if problems:
            bad_rows.append(BadRow(shown, record.line, "; ".join(problems)))
        else:
            texts.append(text_separator.join(parts))
            labels.append(label)
            lines.append(record.line)
    bad_rows.sort(key=lambda b: b.line)

    total = table.total_rows
    if not texts:
        raise _no_rows_error(shown, total, bad_rows)
    labels, merged = unify_label_spellings(labels, allowed)
    notices = [f"{shown}: labels that differ only in case or spacing were merged: {merged}"] if merged else []
    if len(bad_rows) / total > max_bad_fraction:
        raise DataError(
            f"{shown}: {len(bad_rows):,} of {total:,} rows are bad "
            f"({percent(len(bad_rows) / total)}, over data.max_bad_fraction="
            f"{max_bad_fraction * 100:g}%)\n" + "\n".join(bad_row_lines(bad_rows, 20))
        )
    return LabeledExamples(
        shown, texts, labels, lines, bad_rows, total, text_keys, label_key, max_bad_fraction, notices
    )


def unify_label_spellings(labels: list[str], allowed: dict[str, str] | None = None) -> tuple[list[str], str]:
    """Labels that differ only in case ("Positive", "positive") as one label: the allowed
    spelling, else the most frequent one. Returns the labels and what was merged ("" if nothing):
    '"Positive" (3 rows) -> "positive"'."""
    canonical = dict(allowed or {})
    for label, _ in Counter(labels).most_common():
        canonical.setdefault(spelling_key(label), label)
    merged = Counter((label, canonical[spelling_key(label)]) for label in labels if canonical[spelling_key(label)] != label)
    if not merged:
        return labels, ""
    text = ", ".join(f'"{old}" ({n:,} row{"s" if n > 1 else ""}) -> "{new}"' for (old, new), n in sorted(merged.items()))
    return [canonical[spelling_key(label)] for label in labels], text


def spelling_key(label: str) -> str:
    """What two spellings of one label share: case and runs of spaces do not count."""
    return " ".join(label.split()).casefold()


def format_bad_rows(
    source: LabeledExamples | Sequence[BadRow],
    limit: int = 20,
    *,
    max_bad_fraction: float | None = None,
) -> str:
    """The user-facing report of skipped rows ("" when there are none), first `limit` by line.

    The limit shown defaults to the one the examples were loaded with.
    """
    bad_rows = source.bad_rows if isinstance(source, LabeledExamples) else list(source)
    if not bad_rows:
        return ""
    if isinstance(source, LabeledExamples):
        total = source.total_rows
        if max_bad_fraction is None:
            max_bad_fraction = source.max_bad_fraction
        head = (
            f"{source.path}: {len(bad_rows):,} of {total:,} rows skipped "
            f"({percent(len(bad_rows) / total)}, limit data.max_bad_fraction="
            f"{max_bad_fraction * 100:g}%)"
        )
    else:
        paths = sorted({b.path for b in bad_rows})
        head = f"{', '.join(paths)}: {len(bad_rows):,} bad row{'s' if len(bad_rows) > 1 else ''}"
    return "\n".join([head, *bad_row_lines(bad_rows, limit)])


def class_balance_report(labels: Sequence[str]) -> tuple[dict[str, int], str | None]:
    """Rows per label (in label order) and a warning when classes are too few or imbalanced."""
    counts = Counter(labels)
    numeric = all(label.lstrip("-").isdigit() for label in counts)
    ordered = {k: counts[k] for k in sorted(counts, key=int if numeric else str)}
    if not ordered:
        return ordered, None
    warnings = []
    if len(ordered) == 1:
        warnings.append(f'only one label ("{next(iter(ordered))}"); a classifier needs two or more')
    rare = [k for k, n in ordered.items() if n < 2]
    if rare:
        names = ", ".join(f'"{k}"' for k in rare)
        warnings.append(f"label{'s' if len(rare) > 1 else ''} {names} with a single row")
    largest = max(ordered, key=ordered.__getitem__)
    smallest = min(ordered, key=ordered.__getitem__)
    if ordered[largest] > 3 * ordered[smallest]:
        warnings.append(
            f'imbalanced classes: "{largest}" has {ordered[largest]:,} rows, "{smallest}" has '
            f"{ordered[smallest]:,} ({ordered[largest] / ordered[smallest]:.1f}x)"
        )
    return ordered, "; ".join(warnings) or None


def _no_rows_error(path: str, total: int, bad_rows: Sequence[BadRow]) -> DataError:
    detail = f"all {total:,} rows are bad" if total else "no data rows"
    return DataError("\n".join([f"{path}: {detail}", *bad_row_lines(bad_rows, 20)]))


def _as_text(value: object, what: str) -> tuple[str, str | None]:
    """(stripped text, problem); JSON numbers and booleans become text as JSON writes them."""
    if value is MISSING or value is None:
        return "", None
    if isinstance(value, (dict, list)):
        kind = "an object" if isinstance(value, dict) else "an array"
        return "", f"{what} is {kind}, expected a string or number"
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    return str(value).strip(), None


def _check_row(
    record: Record,
    text_keys: list[Column],
    label_key: Column,
    where: str,
    allowed: dict[str, str] | None,
) -> tuple[list[str], str, list[str]]:
    """(non-empty text parts, label, problems) of one record."""
    values = [cell(record, key) for key in text_keys]
    parts, problems = [], []
    for key, value in zip(text_keys, values):
        text, problem = _as_text(value, f"text in {where} {show_column(key)}")
        parts += [text] if text else []
        problems += [problem] if problem else []
    if not parts and not problems:
        state = "missing" if all(v is MISSING for v in values) else "empty"
        plural = "s" if len(text_keys) > 1 else ""
        problems.append(f"{state} text in {where}{plural} {', '.join(map(show_column, text_keys))}")
    value = cell(record, label_key)
    label, problem = _as_text(value, f"label in {where} {show_column(label_key)}")
    if problem or not label:
        state = "missing" if value is MISSING else "empty"
        problems.append(problem or f"{state} label in {where} {show_column(label_key)}")
    elif allowed is not None and spelling_key(label) not in allowed:
        problems.append(f'unknown label "{label}" (expected one of: {", ".join(allowed.values())})')
    return parts, label, problems


def load_texts(
    path: str | Path,
    *,
    text_columns: list[Column] | Column | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
    text_separator: str = "\n",
) -> tuple[list[str], list[BadRow]]:
    """The texts of every row of a file (labels, if any, ignored), for prediction.

    Rows whose text is empty are returned as bad rows instead of texts.
    """
    table = read_table(path, delimiter=delimiter, header=header)
    if not table.records:
        raise _no_rows_error(str(path), table.total_rows, table.bad_rows)
    keys = column_keys(table)
    given = [text_columns] if isinstance(text_columns, (str, int)) else text_columns
    text_keys = [resolve_column(table, keys, c, "data.text_columns") for c in given or []]
    if not text_keys:
        text_keys = detect_text_columns(table, keys, label=None)
    texts, bad_rows = [], list(table.bad_rows)
    for record in table.records:
        parts = [_as_text(cell(record, key), "text")[0] for key in text_keys]
        parts = [p for p in parts if p]
        if parts:
            texts.append(text_separator.join(parts))
        else:
            bad_rows.append(BadRow(str(path), record.line, "empty text"))
    return texts, sorted(bad_rows, key=lambda b: b.line)
