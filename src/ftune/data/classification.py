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
from ftune.data.readers import BadRow, Record, Table, is_number, read_table
from ftune.errors import DataError

Column = str | int

LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "y")
TEXT_NAMES = ("text", "sentence", "review", "content", "body", "document")
TITLE_PAIRS = (("title", "description"), ("title", "body"))  # joined, e.g. AG News
DETECTION_SAMPLE_ROWS = 10_000
MAX_LABEL_CLASSES = 100
MAX_LABEL_LENGTH = 50
_MISSING = object()  # a JSON record without the key


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
    keys = _column_keys(table)

    texts_given = [text_columns] if isinstance(text_columns, (str, int)) else text_columns
    text_keys = [_resolve(table, keys, c, "data.text_columns") for c in texts_given or []]
    label_key = (
        _resolve(table, keys, label_column, "data.label_column")
        if label_column is not None
        else _detect_label(table, keys, exclude=text_keys)
    )
    if label_key in text_keys:
        raise DataError(f"{shown}: column {_show(label_key)} is both the label and a text column")
    if not text_keys:
        text_keys = _detect_text(table, keys, label_key)

    allowed = [str(a).strip() for a in allowed_labels] if allowed_labels is not None else None
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
    if len(bad_rows) / total > max_bad_fraction:
        raise DataError(
            f"{shown}: {len(bad_rows):,} of {total:,} rows are bad "
            f"({percent(len(bad_rows) / total)}, over data.max_bad_fraction="
            f"{max_bad_fraction * 100:g}%)\n" + "\n".join(bad_row_lines(bad_rows, 20))
        )
    return LabeledExamples(
        shown, texts, labels, lines, bad_rows, total, text_keys, label_key, max_bad_fraction
    )


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





def _show(key: Column) -> str:
    return f'"{key}"' if isinstance(key, str) else str(key)


def _column_keys(table: Table) -> list[Column]:
    if table.columns is not None:
        return list(table.columns)
    return list(range(len(table.records[0].values)))  # every record has the same field count


def _cell(record: Record, key: Column) -> object:
    values = record.values
    if isinstance(values, dict):
        return values.get(key, _MISSING)  # type: ignore[call-overload]
    return values[key]  # type: ignore[index]


def _as_text(value: object, what: str) -> tuple[str, str | None]:
    """(stripped text, problem); JSON numbers and booleans become text as JSON writes them."""
    if value is _MISSING or value is None:
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
    allowed: list[str] | None,
) -> tuple[list[str], str, list[str]]:
    """(non-empty text parts, label, problems) of one record."""
    values = [_cell(record, key) for key in text_keys]
    parts, problems = [], []
    for key, value in zip(text_keys, values):
        text, problem = _as_text(value, f"text in {where} {_show(key)}")
        parts += [text] if text else []
        problems += [problem] if problem else []
    if not parts and not problems:
        state = "missing" if all(v is _MISSING for v in values) else "empty"
        plural = "s" if len(text_keys) > 1 else ""
        problems.append(f"{state} text in {where}{plural} {', '.join(map(_show, text_keys))}")
    value = _cell(record, label_key)
    label, problem = _as_text(value, f"label in {where} {_show(label_key)}")
    if problem or not label:
        state = "missing" if value is _MISSING else "empty"
        problems.append(problem or f"{state} label in {where} {_show(label_key)}")
    elif allowed is not None and label not in allowed:
        problems.append(f'unknown label "{label}" (expected one of: {", ".join(allowed)})')
    return parts, label, problems


def _column_values(table: Table, key: Column) -> list[str]:
    values = []
    for record in table.records[:DETECTION_SAMPLE_ROWS]:
        value = _cell(record, key)
        if value is not _MISSING and value is not None and not isinstance(value, (dict, list)):
            text = str(value).strip()
            if text:
                values.append(text)
    return values


def _listing(table: Table, keys: list[Column]) -> str:
    lines = ["  columns (with sample values):"]
    for key in keys:
        samples = list(dict.fromkeys(_column_values(table, key)[:50]))[:3]
        shown = ", ".join(f'"{s[:30]}..."' if len(s) > 30 else f'"{s}"' for s in samples)
        lines.append(f"    {_show(key)}: {shown or '(empty)'}")
    return "\n".join(lines)


def _resolve(table: Table, keys: list[Column], spec: Column, setting: str) -> Column:
    """Map a configured column (name or 0-based position) to a key of the records."""
    is_json = table.format in ("json", "jsonl")
    names = table.columns or []
    # A position given as text (e.g. from a command-line override) still means a position.
    if isinstance(spec, str) and spec.strip().isdigit() and spec not in names and not is_json:
        spec = int(spec)
    if isinstance(spec, bool) or not isinstance(spec, (str, int)):
        raise DataError(f"{table.path}: {setting} must be a column name or position, got {spec!r}")
    if isinstance(spec, int):
        if is_json:
            problem = "JSON records have no column positions; use the key name"
        elif not 0 <= spec < len(keys):
            problem = f"no such column (positions are 0-based, 0 to {len(keys) - 1})"
        else:
            return keys[spec]
        raise DataError(f"{table.path}: {setting} = {spec}: {problem}\n" + _listing(table, keys))
    if table.columns is None:
        raise DataError(
            f'{table.path}: {setting} = "{spec}": the file has no header row, so its columns '
            f"have no names; use 0-based positions (or data.header: true if the first row "
            "names the columns)\n" + _listing(table, keys)
        )
    if spec in names:
        return spec
    lowered = {n.lower(): n for n in names}
    close = [lowered[spec.lower()]] if spec.lower() in lowered else []
    if not close:
        import difflib  # only on this error path

        close = difflib.get_close_matches(spec, names, n=1)
    hint = f' Did you mean "{close[0]}"?' if close else ""
    message = f'{table.path}: {setting} = "{spec}": no such column.{hint}\n'
    raise DataError(message + _listing(table, keys))


def _few_distinct(values: list[str]) -> bool:
    """Label-like: a handful of short values, each repeated (<= 100 classes, <= 20% distinct)."""
    distinct = set(values)
    return (
        2 <= len(distinct) <= MAX_LABEL_CLASSES
        and len(distinct) <= 0.2 * len(values)
        and max(map(len, distinct)) <= MAX_LABEL_LENGTH
    )


def _ambiguous(table: Table, keys: list[Column], what: str, reason: str, setting: str) -> DataError:
    return DataError(
        f"{table.path}: cannot tell which column{'s hold' if what == 'text' else ' holds'} the "
        f"{what}: {reason}. Set {setting} to a column name or 0-based position.\n"
        + _listing(table, keys)
    )


def _detect_label(table: Table, keys: list[Column], exclude: list[Column]) -> Column:
    candidates = [k for k in keys if k not in exclude]
    if table.columns is not None:
        named = [k for k in candidates if str(k).lower() in LABEL_NAMES]
        if len(named) == 1:
            return named[0]
        if named:
            shown = ", ".join(_show(k) for k in named)
            reason = f"several columns are named like a label ({shown})"
            raise _ambiguous(table, keys, "label", reason, "data.label_column")
    few = [k for k in candidates if _few_distinct(_column_values(table, k))]
    if len(few) == 1:
        return few[0]
    named_hint = "no column is named like a label (label, class, ...) and " if table.columns else ""
    if few:
        detail = f"{len(few)} columns have few distinct values ({', '.join(map(_show, few))})"
    else:
        detail = "no column has few distinct values"
    raise _ambiguous(table, keys, "label", named_hint + detail, "data.label_column")


def _detect_text(table: Table, keys: list[Column], label: Column) -> list[Column]:
    candidates = [k for k in keys if k != label]
    if table.columns is not None:
        lowered = {str(k).lower(): k for k in candidates}
        for pair in TITLE_PAIRS:
            if all(name in lowered for name in pair):
                return [lowered[name] for name in pair]
        named = [k for k in candidates if str(k).lower() in TEXT_NAMES]
        if len(named) == 1:
            return named
        if named:
            reason = f"several columns are named like text ({', '.join(map(_show, named))})"
            raise _ambiguous(table, keys, "text", reason, "data.text_columns")
    # Numeric columns (ids, scores) and label-like columns are never the text.
    wordy = []
    for key in candidates:
        values = _column_values(table, key)
        if not all(is_number(v) for v in values) and not _few_distinct(values):
            wordy.append(key)
    # Headerless files (AG News) put title and description in separate columns: join them all.
    if wordy and (table.columns is None or len(wordy) == 1):
        return wordy
    if wordy:
        reason = f"no column is named like text (text, sentence, ...) and {len(wordy)} could be"
    else:
        reason = "every column other than the label is empty or numeric"
    raise _ambiguous(table, keys, "text", reason, "data.text_columns")


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
    keys = _column_keys(table)
    given = [text_columns] if isinstance(text_columns, (str, int)) else text_columns
    text_keys = [_resolve(table, keys, c, "data.text_columns") for c in given or []]
    if not text_keys:
        text_keys = _detect_text(table, keys, label=None)
    texts, bad_rows = [], list(table.bad_rows)
    for record in table.records:
        parts = [_as_text(_cell(record, key), "text")[0] for key in text_keys]
        parts = [p for p in parts if p]
        if parts:
            texts.append(text_separator.join(parts))
        else:
            bad_rows.append(BadRow(str(path), record.line, "empty text"))
    return texts, sorted(bad_rows, key=lambda b: b.line)
