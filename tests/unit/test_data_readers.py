"""read_table: formats, gzip, line numbers, header detection and bad rows."""

import gzip
from pathlib import Path

import pytest

from ftune.data.readers import BadRow, read_table
from ftune.errors import DataError

FIXTURES = Path(__file__).parents[1] / "fixtures"
REVIEW_FILES = ["reviews.csv", "reviews.tsv", "reviews.jsonl", "reviews.json"]


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def rows_of(table):
    return [(r.values["text"], r.values["label"]) for r in table.records]


@pytest.mark.parametrize("name", REVIEW_FILES)
def test_every_format_reads_the_same_40_reviews(name):
    table = read_table(FIXTURES / name)
    reference = read_table(FIXTURES / "reviews.csv")
    assert table.columns == ["text", "label"]
    assert table.total_rows == 40 and not table.bad_rows
    assert rows_of(table) == rows_of(reference)
    # CSV quoting is undone: commas and doubled quotes inside quoted fields.
    assert rows_of(table)[2] == ("Smart, tender, and beautifully shot.", "positive")
    assert rows_of(table)[8][0] == 'She called it "the best film of the year" and I agree.'


def test_line_numbers_are_physical_lines():
    assert [r.line for r in read_table(FIXTURES / "reviews.csv").records][:3] == [2, 3, 4]
    assert [r.line for r in read_table(FIXTURES / "reviews.jsonl").records][:3] == [1, 2, 3]
    # reviews.json is indented: "[" on line 1, then each object takes 4 lines.
    json_lines = [r.line for r in read_table(FIXTURES / "reviews.json").records]
    assert json_lines == [2 + 4 * i for i in range(40)]


@pytest.mark.parametrize("name", REVIEW_FILES)
def test_gzipped_files_read_like_plain_ones(tmp_path, name):
    gz = tmp_path / f"{name}.gz"
    gz.write_bytes(gzip.compress((FIXTURES / name).read_bytes()))
    plain, zipped = read_table(FIXTURES / name), read_table(gz)
    assert rows_of(zipped) == rows_of(plain)
    assert [r.line for r in zipped.records] == [r.line for r in plain.records]
    assert zipped.format == plain.format


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r'train\.txt: unsupported file type "\.txt".*\.csv, \.tsv'):
        read_table(write(tmp_path / "train.txt", "a,b\n"))
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not a valid gzip file"):
        read_table(write(tmp_path / "fake.csv.gz", "text,label\n"))


def test_bad_row_str():
    assert str(BadRow("t.csv", 42, 'empty text in column "text"')) == (
        'line 42: empty text in column "text"'
    )


def test_broken_csv_bad_rows_and_lines(tmp_path):
    # Inject invalid UTF-8 at line 31 at test time; the committed fixture stays valid text.
    broken = tmp_path / "broken.csv"
    broken.write_bytes((FIXTURES / "broken.csv").read_bytes().replace(b"@@NOT_UTF8@@", b"\xff\xfe"))
    table = read_table(broken)
    assert [(b.line, b.reason) for b in table.bad_rows] == [
        (15, "expected 2 fields, found 3"),
        (25, "expected 2 fields, found 1"),
        (31, "undecodable bytes (not UTF-8)"),
        (35, "expected 2 fields, found 3"),
    ]
    assert all(b.path == str(broken) for b in table.bad_rows)
    # 41 physical data lines - 1 blank - 2 continuation lines of the quoted record = 38 rows.
    assert table.total_rows == 38 and len(table.records) == 34
    by_line = {r.line: r.values for r in table.records}
    assert by_line[21]["text"] == "A film in three acts:\nsetup, confrontation,\nresolution"
    assert by_line[24]["text"] == "The characters are paper thin."  # after the 3-line record
    assert by_line[32]["text"] == "A confusing and joyless film."  # after the undecodable line
    assert 28 not in by_line and 31 not in by_line


def test_sst2_like_tsv_has_header_and_keeps_quotes(tmp_path):
    path = write(
        tmp_path / "sst.tsv",
        'sentence\tlabel\nhide new secretions\t0\nthe "best" film , ever\t1\n"oops\t0\nlast\t1\n',
    )
    table = read_table(path)
    assert table.columns == ["sentence", "label"]
    # No quote handling in TSV: a stray quote stays literal and cannot swallow later lines.
    assert [r.values["sentence"] for r in table.records] == [
        "hide new secretions", 'the "best" film , ever', '"oops', "last"]
    assert [r.line for r in table.records] == [2, 3, 4, 5]


def test_ag_news_like_csv_is_headerless():
    table = read_table(FIXTURES / "headerless_news.csv")
    assert table.columns is None
    assert len(table.records) == 20 and table.records[0].line == 1
    assert table.records[0].values[:2] == ["3", "Retail Sales Climb in March"]
    assert 'show "surprisingly" smooth' in table.records[7].values[2]


@pytest.mark.parametrize(
    "content, expected",
    [
        ("id,text,label\n1,good film,1\n2,bad film,0\n", True),  # numbers under words
        ("1,good film,1\n2,bad film,0\n", False),  # a number is never a column name
        ("text,label\ngood film,positive\nbad film,negative\n", True),  # identifier-like names
        ("great film,positive\nbad film,negative\n", False),  # a space: not a column name
        ("good,positive\nbad,negative\nfine,positive\n", False),  # "positive" recurs below
        ("text,text\ngood film,positive\n", False),  # names must be distinct
    ],
)
def test_header_detection(tmp_path, content, expected):
    table = read_table(write(tmp_path / "data.csv", content))
    assert (table.columns is not None) is expected


def test_header_override(tmp_path):
    path = write(tmp_path / "data.csv", "1,good film\n0,bad film\n")
    forced = read_table(path, header=True)
    assert forced.columns == ["1", "good film"]
    assert forced.records[0].values == {"1": "0", "good film": "bad film"}
    assert read_table(FIXTURES / "reviews.csv", header=False).records[0].values == ["text", "label"]


def test_headerless_field_count_uses_most_common(tmp_path):
    path = write(tmp_path / "data.csv", "a,1\nb,2\nc,3,x\n\n   \nd\ne,4\n")
    table = read_table(path)
    assert table.columns is None
    assert [(b.line, b.reason) for b in table.bad_rows] == [
        (3, "expected 2 fields, found 3"), (6, "expected 2 fields, found 1")]
    assert [r.line for r in table.records] == [1, 2, 7]  # blank lines 4-5 are not rows
    assert table.total_rows == 5


def test_unbalanced_quote_is_reported_with_its_span(tmp_path):
    path = write(tmp_path / "data.csv", 'text,label\n"open quote,1\nnext,0\nlast,1\n')
    table = read_table(path)
    assert [(b.line, b.reason) for b in table.bad_rows] == [
        (2, "expected 2 fields, found 1 (record spans lines 2-4; an unbalanced double quote?)")]


def test_bom_crlf_and_delimiter(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xef\xbb\xbftext;label\r\ngood;1\r\nbad;0\r\n")
    table = read_table(path, delimiter=";")
    assert table.columns == ["text", "label"]
    assert [r.values for r in table.records] == [
        {"text": "good", "label": "1"}, {"text": "bad", "label": "0"}]
    with pytest.raises(DataError, match="delimiter must be one character"):
        read_table(path, delimiter=";;")


def test_tsv_with_csv_quoting_on_request(tmp_path):
    path = write(tmp_path / "data.tsv", 'text\tlabel\n"two\nlines"\t1\nplain\t0\n')
    table = read_table(path, quoting="csv")
    assert [(r.line, r.values["text"]) for r in table.records] == [(2, "two\nlines"), (4, "plain")]


def test_jsonl_bad_lines(tmp_path):
    path = write(
        tmp_path / "data.jsonl",
        '{"text": "a", "label": 1}\n\n{"text": "b"\n[1, 2]\n"just a string"\n'
        '{"text": "c", "extra": 2}\n',
    )
    table = read_table(path)
    assert [(b.line, b.reason) for b in table.bad_rows] == [
        (3, "invalid JSON (Expecting ',' delimiter at column 13)"),
        (4, "expected a JSON object, found an array"),
        (5, "expected a JSON object, found a string"),
    ]
    assert [r.line for r in table.records] == [1, 6]
    assert table.columns == ["text", "label", "extra"]
    assert table.records[0].values == {"text": "a", "label": 1}  # values keep their JSON type
    assert table.total_rows == 5


def test_jsonl_undecodable_line(tmp_path):
    path = tmp_path / "data.ndjson"
    path.write_bytes(b'{"text": "a"}\n{"text": "\xff"}\n{"text": "c"}\n')
    table = read_table(path)
    assert [(b.line, b.reason) for b in table.bad_rows] == [(2, "undecodable bytes (not UTF-8)")]
    assert [r.line for r in table.records] == [1, 3]


def test_json_object_with_data_key_and_non_object_items(tmp_path):
    doc = (
        '{"version": 2,\n "data": [\n  {"text": "a", "label": "x"},\n  "oops",\n'
        '  {"text": "b",\n   "label": "y"}\n ]\n}\n'
    )
    table = read_table(write(tmp_path / "data.json", doc))
    assert [(r.line, r.values["text"]) for r in table.records] == [(3, "a"), (5, "b")]
    assert [(b.line, b.reason) for b in table.bad_rows] == [
        (4, "item 2 of the array: expected a JSON object, found a string")]
    assert table.total_rows == 3


def test_json_errors(tmp_path):
    with pytest.raises(DataError, match=r"line 2, column 1: invalid JSON"):
        read_table(write(tmp_path / "a.json", '[{"text": "a"},\n]\n'))
    with pytest.raises(DataError, match=r'arrays found: "train", "test"'):
        read_table(write(tmp_path / "b.json", '{"train": [], "test": []}'))
    with pytest.raises(DataError, match="expected an array of JSON objects, found a string"):
        read_table(write(tmp_path / "c.json", '"text"'))


def test_json_file_holding_json_lines(tmp_path):
    # datasets' to_json() writes JSON Lines under a .json name.
    table = read_table(write(tmp_path / "data.json", '{"text": "a"}\n{"text": "b"}\n'))
    assert [(r.line, r.values["text"]) for r in table.records] == [(1, "a"), (2, "b")]
    assert table.format == "json"


def test_empty_file(tmp_path):
    table = read_table(write(tmp_path / "data.csv", ""))
    assert table.records == [] and table.total_rows == 0 and table.columns is None


def test_committed_broken_fixture_is_valid_utf8():
    # Only the test copy gets invalid bytes; as committed, line 31 is an ordinary row.
    table = read_table(FIXTURES / "broken.csv")
    assert {r.line: r.values["label"] for r in table.records}[31] == "positive"
    assert [b.line for b in table.bad_rows] == [15, 25, 35]


def test_oversized_field_is_a_bad_row_and_reading_resumes(tmp_path):
    path = write(tmp_path / "data.csv", f'text,label\nok,1\n"{"x" * 200_000}",0\nfine,1\n')
    table = read_table(path)
    assert [(b.line, b.reason) for b in table.bad_rows] == [
        (3, "unreadable row (field larger than field limit (131072))")]
    assert [(r.line, r.values["text"]) for r in table.records] == [(2, "ok"), (4, "fine")]
