"""Which columns of a table hold the texts and the label: given by name or 0-based
position, or detected when the choice is unambiguous; every error lists the columns with
sample values, so the user can name the right one."""

from __future__ import annotations

from ftune.data.readers import Record, Table, is_number
from ftune.errors import DataError

Column = str | int
MISSING = object()  # a JSON record without the key
LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "y")
TEXT_NAMES = ("text", "sentence", "review", "content", "body", "document")
TITLE_PAIRS = (("title", "description"), ("title", "body"))  # joined, e.g. AG News
DETECTION_SAMPLE_ROWS = 10_000
MAX_LABEL_CLASSES = 100
MAX_LABEL_LENGTH = 50


def show_column(key: Column) -> str:
    return f'"{key}"' if isinstance(key, str) else str(key)


def column_keys(table: Table) -> list[Column]:
    if table.columns is not None:
        return list(table.columns)
    return list(range(len(table.records[0].values)))  # every record has the same field count


def cell(record: Record, key: Column) -> object:
    values = record.values
    if isinstance(values, dict):
        return values.get(key, MISSING)  # type: ignore[call-overload]
    return values[key]  # type: ignore[index]


def column_values(table: Table, key: Column) -> list[str]:
    values = []
    for record in table.records[:DETECTION_SAMPLE_ROWS]:
        value = cell(record, key)
        if value is not MISSING and value is not None and not isinstance(value, (dict, list)):
            text = str(value).strip()
            if text:
                values.append(text)
    return values


def column_listing(table: Table, keys: list[Column]) -> str:
    lines = ["  columns (with sample values):"]
    for key in keys:
        samples = list(dict.fromkeys(column_values(table, key)[:50]))[:3]
        shown = ", ".join(f'"{s[:30]}..."' if len(s) > 30 else f'"{s}"' for s in samples)
        lines.append(f"    {show_column(key)}: {shown or '(empty)'}")
    return "\n".join(lines)


def resolve_column(table: Table, keys: list[Column], spec: Column, setting: str) -> Column:
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
        raise DataError(f"{table.path}: {setting} = {spec}: {problem}\n" + column_listing(table, keys))
    if table.columns is None:
        raise DataError(
            f'{table.path}: {setting} = "{spec}": the file has no header row, so its columns '
            f"have no names; use 0-based positions (or data.header: true if the first row "
            "names the columns)\n" + column_listing(table, keys)
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
    raise DataError(message + column_listing(table, keys))


def few_distinct(values: list[str]) -> bool:
    """Label-like: a handful of short values, each repeated (<= 100 classes, <= 20% distinct)."""
    distinct = set(values)
    return (
        2 <= len(distinct) <= MAX_LABEL_CLASSES
        and len(distinct) <= 0.2 * len(values)
        and max(map(len, distinct)) <= MAX_LABEL_LENGTH
    )


def ambiguous_columns(table: Table, keys: list[Column], what: str, reason: str, setting: str) -> DataError:
    return DataError(
        f"{table.path}: cannot tell which column{'s hold' if what == 'text' else ' holds'} the "
        f"{what}: {reason}. Set {setting} to a column name or 0-based position.\n"
        + column_listing(table, keys)
    )


def wrong_delimiter(table: Table, keys: list[Column]) -> DataError | None:
    """A file read as one column whose cells hold tabs, semicolons or bars: the delimiter is wrong
    (a TSV named .csv), which no column setting can fix."""
    if len(keys) != 1:
        return None
    cells = [str(keys[0])] + [str(v) for v in column_values(table, keys[0])[:20]]
    for mark, name in (("\t", "tab"), (";", "semicolon"), ("|", "bar")):
        if sum(mark in cell for cell in cells) >= max(2, len(cells) // 2):
            shown = "\\t" if mark == "\t" else mark
            return DataError(f"{table.path}: every row was read as one column, and its cells hold {name}s: the file "
                             f"looks {name}-separated. Set data.delimiter='{shown}'"
                             + (" or name the file .tsv" if mark == "\t" else ""))
    return None


def detect_label_column(table: Table, keys: list[Column], exclude: list[Column]) -> Column:
    problem = wrong_delimiter(table, keys)
    if problem is not None:
        raise problem
    candidates = [k for k in keys if k not in exclude]
    if table.columns is not None:
        named = [k for k in candidates if str(k).lower() in LABEL_NAMES]
        if len(named) == 1:
            return named[0]
        if named:
            shown = ", ".join(show_column(k) for k in named)
            reason = f"several columns are named like a label ({shown})"
            raise ambiguous_columns(table, keys, "label", reason, "data.label_column")
    few = [k for k in candidates if few_distinct(column_values(table, k))]
    if len(few) == 1:
        return few[0]
    named_hint = "no column is named like a label (label, class, ...) and " if table.columns else ""
    if few:
        detail = f"{len(few)} columns have few distinct values ({', '.join(map(show_column, few))})"
    else:
        detail = "no column has few distinct values"
    raise ambiguous_columns(table, keys, "label", named_hint + detail, "data.label_column")


def detect_text_columns(table: Table, keys: list[Column], label: Column) -> list[Column]:
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
            reason = f"several columns are named like text ({', '.join(map(show_column, named))})"
            raise ambiguous_columns(table, keys, "text", reason, "data.text_columns")
    # Numeric columns (ids, scores) and label-like columns are never the text.
    wordy = []
    for key in candidates:
        values = column_values(table, key)
        if not all(is_number(v) for v in values) and not few_distinct(values):
            wordy.append(key)
    # Headerless files (AG News) put title and description in separate columns: join them all.
    if wordy and (table.columns is None or len(wordy) == 1):
        return wordy
    if wordy:
        reason = f"no column is named like text (text, sentence, ...) and {len(wordy)} could be"
    else:
        reason = "every column other than the label is empty or numeric"
    raise ambiguous_columns(table, keys, "text", reason, "data.text_columns")
