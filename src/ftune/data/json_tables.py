"""JSON Lines and JSON array files as tables: one record per object, with the physical
line where each object starts, and a `BadRow` for every line or item that is not an object."""

from __future__ import annotations

import json
import re
from typing import Iterable

from ftune.data.table import BadRow, Record, Table
from ftune.errors import DataError

_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


def read_jsonl_table(
    lines: Iterable[tuple[int, str]], path: str, bad_rows: list[BadRow], fmt: str = "jsonl"
) -> Table:
    records: list[Record] = []
    keys: dict[str, None] = {}  # insertion-ordered set of keys seen
    for number, text in lines:
        if not text.strip():
            continue
        try:
            obj = json.loads(text.rstrip("\r\n"))  # so an error's column stays on this line
        except json.JSONDecodeError as e:
            bad_rows.append(BadRow(path, number, f"invalid JSON ({e.msg} at column {e.colno})"))
            continue
        except RecursionError:
            bad_rows.append(BadRow(path, number, "JSON nested too deeply to be a row"))
            continue
        if not isinstance(obj, dict):
            reason = f"expected a JSON object, found {_json_type(obj)}"
            bad_rows.append(BadRow(path, number, reason))
            continue
        keys.update(dict.fromkeys(obj))
        records.append(Record(number, obj))
    bad_rows.sort(key=lambda b: b.line)
    return Table(path, list(keys), records, bad_rows, len(records) + len(bad_rows), fmt)


def read_json_table(raw: bytes, path: str) -> Table:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}: line {line}: undecodable bytes (not UTF-8); a .json file is parsed as a "
            "whole, so it must be valid UTF-8 throughout"
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        # Many tools (e.g. datasets' to_json) write JSON Lines under a .json name.
        first = text.lstrip().split("\n", 1)[0]
        if e.msg == "Extra data" and first.startswith("{"):
            return read_jsonl_table(enumerate(text.split("\n"), start=1), path, [], fmt="json")
        where = f"line {e.lineno}, column {e.colno}"
        raise DataError(f"{path}: {where}: invalid JSON ({e.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be a table of rows") from None

    key = None
    if isinstance(doc, dict):
        list_keys = [k for k, v in doc.items() if isinstance(v, list)]
        if len(list_keys) != 1:
            found = ", ".join(f'"{k}"' for k in list_keys) or "none"
            raise DataError(
                f"{path}: expected an array of records, or an object with exactly one array "
                f"(such as \"data\"); arrays found: {found}"
            )
        key = list_keys[0]
        items = doc[key]
    elif isinstance(doc, list):
        items = doc
    else:
        raise DataError(f"{path}: expected an array of JSON objects, found {_json_type(doc)}")

    records: list[Record] = []
    bad_rows: list[BadRow] = []
    keys: dict[str, None] = {}
    line, previous = 1, 0
    for index, (item, offset) in enumerate(zip(items, _item_offsets(text, key)), start=1):
        line += text.count("\n", previous, offset)
        previous = offset
        if isinstance(item, dict):
            keys.update(dict.fromkeys(item))
            records.append(Record(line, item))
        else:
            reason = f"item {index} of the array: expected a JSON object, found {_json_type(item)}"
            bad_rows.append(BadRow(path, line, reason))
    return Table(path, list(keys), records, bad_rows, len(records) + len(bad_rows), "json")


def _item_offsets(text: str, key: str | None) -> list[int]:
    """Character offsets where the items of the records array start (text is valid JSON).

    Walks only the top level with raw_decode, so finding line numbers stays a C-speed scan.
    """
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        return _JSON_WHITESPACE.match(text, i).end()  # type: ignore[union-attr]

    i = skip(0)
    if key is not None:  # walk the top-level object to the value of `key`
        i = skip(i + 1)
        while True:
            name, i = decoder.raw_decode(text, i)
            i = skip(skip(i) + 1)  # past the ":"
            if name == key:
                break
            _, i = decoder.raw_decode(text, i)
            i = skip(skip(i) + 1)  # past the ","
    i = skip(i + 1)  # past the "["
    offsets: list[int] = []
    while text[i] != "]":
        offsets.append(i)
        _, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i] == ",":
            i = skip(i + 1)
    return offsets
