"""Property-based fuzzing (Hypothesis) of every data reader and of the config loader.

Whatever the input (random bytes, broken CSV quoting, BOMs, CRLF, NUL bytes, JSON of any shape
and type, truncated gzip, deep nesting, huge lines, labels spelled in several ways), reading it
must end in one of two ways: data (with bad rows reported by line) or an ftune error that
says what is wrong. Never another exception, never a hang (each example has a deadline).
3,000 generated cases (each read by all seven readers), about 25 s;
``--hypothesis-show-statistics`` prints the counts."""

from __future__ import annotations

import gzip
import json
import string

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from ftune.errors import FtuneError  # noqa: E402

GENERATIVE_FORMATS = ["auto", "alpaca", "chat", "prompt_completion", "text", "preference"]
FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
EXTENSIONS = [".csv", ".tsv", ".json", ".jsonl", ".csv.gz", ".jsonl.gz"]

# cells that break parsers: quotes (stray, doubled, unterminated), separators, line ends, NUL, BOM
TRICKY = ['"', '""', '"a,b"', ",", "\t", "\r\n", "\n", "\r", "\x00", "\ufeff", " ", "\\", "'", "{", "[", "é", "\u2028"]
CELL = st.one_of(st.text(string.ascii_letters + string.digits + " .!?", max_size=12), st.sampled_from(TRICKY),
                 st.text(max_size=6))
LABEL = st.sampled_from(["positive", "Positive", " positive ", "POSITIVE", "negative", "Negative", "neg ative",
                         "0", "1", "", '"positive"'])


def _classification(path):
    from ftune.config.schema import DataConfig
    from ftune.data.prepare import build_classification_data

    return build_classification_data(DataConfig(train=str(path)), seed=1)


def _generative(path, fmt):
    from ftune.config.schema import DataConfig
    from ftune.data.prepare_generative import build_generative_data

    return build_generative_data(DataConfig(train=str(path), format=fmt), seed=1)


def _read_all_ways(path, physical_lines: int | None = None):
    """Every reader on ``path``; each must give data or an FtuneError, and bad rows point at real lines."""
    outcomes = []
    for reader in [_classification, *[(lambda p, f=f: _generative(p, f)) for f in GENERATIVE_FORMATS]]:
        try:
            data = reader(path)
        except FtuneError as error:
            assert str(error).strip(), "an empty error message"
            outcomes.append("error")
            continue
        outcomes.append("data")
        for notice in data.notices:
            assert isinstance(notice, str) and notice
        if physical_lines is not None:
            for entry in data.manifest.get("files", []):
                assert entry["bad_rows"] <= max(physical_lines, 1)
    return outcomes


def _write(path, content: bytes):
    path.write_bytes(gzip.compress(content) if path.name.endswith(".gz") else content)
    return path


@FUZZ
@given(content=st.binary(max_size=3000), extension=st.sampled_from(EXTENSIONS))
def test_random_bytes(tmp_path_factory, content, extension):
    path = _write(tmp_path_factory.mktemp("bytes") / f"data{extension}", content)
    _read_all_ways(path)


@FUZZ
@given(rows=st.lists(st.tuples(CELL, LABEL, CELL), max_size=30), header=st.sampled_from(
    [None, "text,label,extra", "text,text,label", "label,text", "\ufefftext,label,extra"]),
    separator=st.sampled_from([",", "\t"]), line_end=st.sampled_from(["\n", "\r\n"]),
    quote_cells=st.booleans())
def test_delimited_text_with_quoting_errors(tmp_path_factory, rows, header, separator, line_end, quote_cells):
    def cell(value):
        return f'"{value}"' if quote_cells and '"' not in value else value

    lines = [header.replace(",", separator)] if header else []
    lines += [separator.join(cell(v) for v in row) for row in rows]
    text = line_end.join(lines) + line_end
    extension = ".csv" if separator == "," else ".tsv"
    path = _write(tmp_path_factory.mktemp("delimited") / f"data{extension}", text.encode("utf-8"))
    _read_all_ways(path, physical_lines=text.count("\n") + text.count("\r") + 1)


JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
JSON_VALUE = st.recursive(JSON_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=12)
# objects with the field names the formats look for, holding values of any JSON type
KNOWN_FIELDS = ["text", "label", "instruction", "input", "output", "messages", "role", "content", "prompt",
                "completion", "chosen", "rejected", "conversations", "from", "value"]
RECORD = st.dictionaries(st.sampled_from(KNOWN_FIELDS), st.one_of(JSON_VALUE, st.lists(
    st.dictionaries(st.sampled_from(["role", "content", "from", "value"]), JSON_VALUE, max_size=3), max_size=4)),
    max_size=5)


@FUZZ
@given(records=st.lists(st.one_of(RECORD, JSON_VALUE), max_size=20), as_lines=st.booleans(),
       broken_line=st.one_of(st.none(), st.integers(0, 19)))
def test_json_of_every_shape_and_type(tmp_path_factory, records, as_lines, broken_line):
    if as_lines:
        lines = [json.dumps(r) for r in records]
        if broken_line is not None and broken_line < len(lines):
            lines[broken_line] = lines[broken_line][: len(lines[broken_line]) // 2]  # cut mid-value
        content, extension = "\n".join(lines).encode(), ".jsonl"
    else:
        content, extension = json.dumps(records).encode(), ".json"
    path = _write(tmp_path_factory.mktemp("json") / f"data{extension}", content)
    _read_all_ways(path)


@FUZZ
@given(rows=st.lists(st.tuples(CELL, LABEL), min_size=1, max_size=20), cut=st.floats(0.0, 0.99))
def test_truncated_gzip(tmp_path_factory, rows, cut):
    text = "text,label\n" + "\n".join(f"{a},{b}" for a, b in rows) + "\n"
    packed = gzip.compress(text.encode())
    path = tmp_path_factory.mktemp("gzip") / "data.csv.gz"
    path.write_bytes(packed[: int(len(packed) * cut)])
    _read_all_ways(path)


SECTIONS = {"model": ["name", "max_length", "trust_remote_code"], "data": ["train", "format", "label_column",
            "text_columns", "labels", "validation_fraction", "max_rows", "label_words"],
            "train": ["epochs", "batch_size", "learning_rate", "max_minutes", "checkpoint_every", "keep_checkpoints",
                      "scheduler", "memory_limit", "seed"], "method": ["name", "r", "alpha", "target_modules"],
            "eval": ["baselines"], "run": ["dir", "name"], "nonsense": ["x"]}
CONFIG_VALUE = st.one_of(JSON_SCALAR, st.lists(JSON_SCALAR, max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                          JSON_SCALAR, max_size=2))
CONFIG = st.dictionaries(st.sampled_from(sorted(SECTIONS)), st.one_of(
    CONFIG_VALUE, st.dictionaries(st.sampled_from(sorted({k for v in SECTIONS.values() for k in v})), CONFIG_VALUE,
                                  max_size=4)), max_size=5)
OVERRIDE = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
    [f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys] + ["model", "method", "x", "", "train..epochs"]),
    st.one_of(st.text(max_size=10), st.sampled_from(["[1, 2", "{a: b}", "null", "1e-4", "-3", "true", "'"])))


@FUZZ
@given(document=st.one_of(CONFIG, JSON_VALUE), overrides=st.lists(OVERRIDE, max_size=4),
       raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_config_loader(tmp_path_factory, document, overrides, raw):
    import yaml

    from ftune.config.schema import Config
    from ftune.settings import load_config

    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_bytes(raw if raw is not None else yaml.safe_dump(document, allow_unicode=True).encode())
    try:
        config = load_config(str(path), overrides)
    except FtuneError as error:
        assert str(error).strip()
        return
    assert isinstance(config, Config)


@pytest.mark.parametrize("extension", [".json", ".jsonl"])
def test_json_nested_ten_thousand_deep(tmp_path, extension):
    deep = "[" * 10_000 + "]" * 10_000
    path = tmp_path / f"deep{extension}"
    path.write_text(deep if extension == ".json" else '{"text": "fine", "label": "a"}\n' + deep + "\n")
    assert set(_read_all_ways(path)) <= {"data", "error"}


def test_config_nested_ten_thousand_deep(tmp_path):
    from ftune.settings import load_config

    path = tmp_path / "deep.yaml"
    path.write_text("model: " + "[" * 10_000 + "]" * 10_000 + "\n")
    with pytest.raises(FtuneError):
        load_config(str(path), [])


@pytest.mark.parametrize("extension", [".csv", ".tsv", ".jsonl"])
def test_one_ten_megabyte_line(tmp_path, extension):
    good = [("a fine film", "positive"), ("a dull film", "negative")] * 10
    huge = "x" * 10_000_000
    if extension == ".jsonl":
        lines = [json.dumps({"text": t, "label": l}) for t, l in good] + [json.dumps({"text": huge, "label": "positive"})]
    else:
        separator = "," if extension == ".csv" else "\t"
        lines = ["text" + separator + "label"] + [t + separator + l for t, l in good] + [huge + separator + "positive"]
    path = tmp_path / f"huge{extension}"
    path.write_text("\n".join(lines) + "\n")
    assert set(_read_all_ways(path)) <= {"data", "error"}
