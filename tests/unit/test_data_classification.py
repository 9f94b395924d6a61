"""load_labeled_file, format_bad_rows and class_balance_report on fixtures with known lines."""

from pathlib import Path

import pytest

from ftune.data.classification import (
    class_balance_report,
    format_bad_rows,
    load_labeled_file,
)
from ftune.data.readers import BadRow
from ftune.errors import DataError

FIXTURES = Path(__file__).parents[1] / "fixtures"
SENTIMENT = ["negative", "positive"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def broken(tmp_path) -> Path:
    """broken.csv with invalid UTF-8 injected at line 31."""
    path = tmp_path / "broken.csv"
    path.write_bytes((FIXTURES / "broken.csv").read_bytes().replace(b"@@NOT_UTF8@@", b"\xff\xfe"))
    return path


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.tsv", "reviews.jsonl", "reviews.json"])
def test_reviews_autodetect_in_every_format(name):
    examples = load_labeled_file(FIXTURES / name)
    assert examples.text_columns == ["text"] and examples.label_column == "label"
    assert len(examples.texts) == 40 and examples.total_rows == 40 and not examples.bad_rows
    assert examples.labels.count("positive") == examples.labels.count("negative") == 20
    assert examples.texts[0] == "A warm and funny film that earns every one of its tears."
    assert examples.labels[:2] == ["positive", "negative"]


def test_broken_file_every_bad_row_with_line_and_reason(broken):
    examples = load_labeled_file(broken, allowed_labels=SENTIMENT, max_bad_fraction=0.5)
    assert [(b.line, b.reason) for b in examples.bad_rows] == [
        (5, 'empty text in column "text"'),
        (9, 'empty text in column "text"'),
        (12, 'empty label in column "label"'),
        (15, "expected 2 fields, found 3"),
        (18, 'unknown label "neutral" (expected one of: negative, positive)'),
        (25, "expected 2 fields, found 1"),
        (31, "undecodable bytes (not UTF-8)"),
        (35, "expected 2 fields, found 3"),
    ]
    assert examples.total_rows == 38 and len(examples.texts) == 30
    multi_line = examples.texts.index("A film in three acts:\nsetup, confrontation,\nresolution")
    assert examples.lines[multi_line] == 21
    assert examples.lines[-1] == 42 and 24 in examples.lines and 28 not in examples.lines
    assert len(examples.texts) == len(examples.labels) == len(examples.lines)


def test_without_allowed_labels_neutral_is_kept(broken):
    examples = load_labeled_file(broken, max_bad_fraction=0.5)
    assert 18 not in [b.line for b in examples.bad_rows]
    assert examples.labels[examples.lines.index(18)] == "neutral"


def test_too_many_bad_rows_is_an_error(broken):
    with pytest.raises(DataError) as info:
        load_labeled_file(broken, allowed_labels=SENTIMENT)
    message = str(info.value)
    assert message.splitlines()[0] == (
        f"{broken}: 8 of 38 rows are bad (21.1%, over data.max_bad_fraction=5%)"
    )
    assert message.splitlines()[1] == '  line 5   empty text in column "text"'
    assert message.splitlines()[-1] == "  line 35  expected 2 fields, found 3"


def test_format_bad_rows_report(broken):
    examples = load_labeled_file(broken, allowed_labels=SENTIMENT, max_bad_fraction=0.5)
    assert format_bad_rows(examples, limit=3).splitlines() == [
        f"{broken}: 8 of 38 rows skipped (21.1%, limit data.max_bad_fraction=50%)",
        '  line 5   empty text in column "text"',
        '  line 9   empty text in column "text"',
        '  line 12  empty label in column "label"',
        "  ... and 5 more",
    ]
    assert "limit data.max_bad_fraction=10%" in format_bad_rows(examples, max_bad_fraction=0.1)
    rows = [BadRow("t.csv", 311, "x"), BadRow("t.csv", 42, "y")]
    assert format_bad_rows(rows) == "t.csv: 2 bad rows\n  line 42   y\n  line 311  x"
    clean = load_labeled_file(FIXTURES / "reviews.csv")
    assert format_bad_rows(clean) == ""


def test_headerless_news_autodetects_label_and_joins_text():
    examples = load_labeled_file(FIXTURES / "headerless_news.csv")
    assert examples.label_column == 0 and examples.text_columns == [1, 2]
    assert sorted(set(examples.labels)) == ["1", "2", "3", "4"]
    assert examples.texts[0] == (
        "Retail Sales Climb in March\nShoppers spent more on cars and clothing last month, "
        "the Commerce Department said on Tuesday, a sign of steady consumer demand."
    )
    assert examples.lines == list(range(1, 21))
    spaced = load_labeled_file(FIXTURES / "headerless_news.csv", text_separator=" . ")
    assert spaced.texts[0].startswith("Retail Sales Climb in March . Shoppers")


def test_positions_and_names():
    by_position = load_labeled_file(FIXTURES / "reviews.csv", text_columns=0, label_column=1)
    assert by_position.text_columns == ["text"] and by_position.label_column == "label"
    by_name = load_labeled_file(
        FIXTURES / "reviews.csv", text_columns=["text"], label_column="label"
    )
    assert by_name.texts == by_position.texts
    # A position typed on the command line arrives as text.
    news = load_labeled_file(FIXTURES / "headerless_news.csv", text_columns="2", label_column="0")
    assert news.text_columns == [2] and news.texts[0].startswith("Shoppers spent")


def test_column_errors_list_the_columns():
    typo = r'data.label_column = "lable": no such column. Did you mean "label"\?'
    with pytest.raises(DataError, match=typo):
        load_labeled_file(FIXTURES / "reviews.csv", label_column="lable")
    with pytest.raises(DataError, match=r'Did you mean "text"\?[\s\S]*"text": "A warm and funny'):
        load_labeled_file(FIXTURES / "reviews.csv", text_columns="Text")
    with pytest.raises(DataError, match=r'data.text_columns = "title": the file has no header row'):
        load_labeled_file(FIXTURES / "headerless_news.csv", text_columns="title")
    with pytest.raises(DataError, match=r"label_column = 1: JSON records have no column positions"):
        load_labeled_file(FIXTURES / "reviews.jsonl", label_column=1)
    with pytest.raises(DataError, match=r"data.label_column = 5: no such column .*0 to 2"):
        load_labeled_file(FIXTURES / "headerless_news.csv", label_column=5)
    with pytest.raises(DataError, match=r'column "text" is both the label and a text column'):
        load_labeled_file(FIXTURES / "reviews.csv", text_columns="text", label_column="text")


def test_title_and_description_are_joined_skipping_empty_parts(tmp_path):
    path = write(
        tmp_path / "news.csv",
        "title,description,category\nA,first story,world\n,second story,sports\n"
        "C,,world\n,,sports\nE,fifth,world\nF,sixth,sports\n",
    )
    examples = load_labeled_file(path, max_bad_fraction=0.5)
    assert examples.text_columns == ["title", "description"] and examples.label_column == "category"
    assert examples.texts == ["A\nfirst story", "second story", "C", "E\nfifth", "F\nsixth"]
    assert [(b.line, b.reason) for b in examples.bad_rows] == [
        (5, 'empty text in columns "title", "description"')]


def test_ambiguous_label_names_the_setting(tmp_path):
    rows = "".join(f"review {i},{'ab'[i % 2]},{'xyz'[i % 3]}\n" for i in range(30))
    path = write(tmp_path / "data.csv", "comment,mood,topic\n" + rows)
    with pytest.raises(DataError) as info:
        load_labeled_file(path)
    message = str(info.value)
    assert "cannot tell which column holds the label" in message
    assert '2 columns have few distinct values ("mood", "topic")' in message
    assert "Set data.label_column" in message
    assert '"topic": "x", "y", "z"' in message
    chosen = load_labeled_file(path, label_column="topic")
    assert chosen.text_columns == ["comment"]  # "mood" has few distinct values: not text


def test_ambiguous_text_names_the_setting(tmp_path):
    rows = "".join(f"text {i},sentence {i},{'ab'[i % 2]}\n" for i in range(10))
    path = write(tmp_path / "data.csv", "text,sentence,label\n" + rows)
    expected = r'several columns are named like text \("text", "sentence"\)[\s\S]*Set data.text_col'
    with pytest.raises(DataError, match=expected):
        load_labeled_file(path)
    assert load_labeled_file(path, text_columns="sentence").texts[0] == "sentence 0"


def test_json_values_become_label_strings(tmp_path):
    path = write(
        tmp_path / "data.jsonl",
        '{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c", "label": null}\n'
        '{"text": ["x"], "label": 1}\n{"label": 0}\n',
    )
    examples = load_labeled_file(path, max_bad_fraction=1)
    assert examples.labels == ["1", "0"]
    assert [(b.line, b.reason) for b in examples.bad_rows] == [
        (3, 'empty label in key "label"'),
        (4, 'text in key "text" is an array, expected a string or number'),
        (5, 'missing text in key "text"'),
    ]


def test_no_usable_rows(tmp_path):
    with pytest.raises(DataError, match="no data rows"):
        load_labeled_file(write(tmp_path / "a.csv", "text,label\n"))
    with pytest.raises(DataError, match=r"all 2 rows are bad\n  line 2 "):
        load_labeled_file(write(tmp_path / "b.csv", "text,label\n,1\n,0\n"), text_columns="text")


def test_class_balance_report():
    counts, warning = class_balance_report(["1", "0", "1", "10", "0", "1", "10"])
    assert counts == {"0": 2, "1": 3, "10": 2} and list(counts) == ["0", "1", "10"]
    assert warning is None
    counts, warning = class_balance_report(["a"] * 7 + ["b"] * 2)
    assert warning == 'imbalanced classes: "a" has 7 rows, "b" has 2 (3.5x)'
    assert "single row" in class_balance_report(["a", "a", "b"])[1]
    assert "only one label" in class_balance_report(["a", "a"])[1]
    assert class_balance_report([]) == ({}, None)

