"""load_generative_file, detection, conversion, write_jsonl and stats on fixtures with known lines."""

import gzip
import json
from pathlib import Path

import pytest

from ftune.data.conversation import Conversation, Message
from ftune.data.generative import (
    convert_examples,
    dataset_stats_basic,
    format_generative_bad_rows,
    load_generative_file,
    write_jsonl,
)
from ftune.errors import DataError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gen"


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "fmt", "kind", "count"), [
    ("alpaca.jsonl", "alpaca", "sft", 12),
    ("alpaca.csv", "alpaca", "sft", 12),
    ("chat.jsonl", "chat", "sft", 10),
    ("prompt_completion.jsonl", "prompt_completion", "sft", 5),
    ("text.jsonl", "text", "sft", 5),
    ("preference.jsonl", "preference", "preference", 6),
    ("hh.jsonl", "hh", "preference", 6),
])
def test_each_fixture_is_detected_and_fully_loaded(name, fmt, kind, count):
    loaded = load_generative_file(FIXTURES / name)
    assert (loaded.format, loaded.kind) == (fmt, kind)
    assert len(loaded.examples) == loaded.total_rows == count and not loaded.bad_rows
    assert format_generative_bad_rows(loaded) == ""


def test_csv_gives_the_same_examples_as_jsonl_with_physical_lines(tmp_path):
    from_csv = load_generative_file(FIXTURES / "alpaca.csv")
    assert from_csv.examples == load_generative_file(FIXTURES / "alpaca.jsonl").examples
    assert from_csv.lines[:3] == [2, 5, 6]  # the first output spans lines 2-4
    gz = tmp_path / "alpaca.csv.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "alpaca.csv").read_bytes()))
    assert load_generative_file(gz).examples == from_csv.examples


def test_json_array_and_tsv_files(tmp_path):
    chat = [json.loads(line) for line in (FIXTURES / "chat.jsonl").read_text(encoding="utf-8").splitlines()]
    as_json = tmp_path / "chat.json"
    as_json.write_text(json.dumps(chat, indent=2), encoding="utf-8")
    loaded = load_generative_file(as_json)
    assert loaded.format == "chat" and loaded.examples == load_generative_file(FIXTURES / "chat.jsonl").examples
    tsv = tmp_path / "pc.tsv"
    tsv.write_text("prompt\tcompletion\nSay hi\tHi\nSay \"bye\"\tBye\n", encoding="utf-8")
    loaded = load_generative_file(tsv)
    assert loaded.format == "prompt_completion" and loaded.lines == [2, 3]
    assert loaded.examples[1] == Conversation([Message("user", 'Say "bye"'), Message("assistant", "Bye")])


def test_every_broken_row_is_reported_with_its_line_and_reason():
    loaded = load_generative_file(FIXTURES / "chat_broken.jsonl", max_bad_fraction=1.0)
    assert [(b.line, b.reason) for b in loaded.bad_rows] == [
        (2, "invalid JSON (Expecting ',' delimiter at column 58)"),
        (3, 'messages[1].role = "asistant": expected system | user | assistant'),
        (5, "messages[3] (assistant) is empty"),
        (6, 'last message is "user": nothing to train on after it'),
        (7, 'missing "messages" (chat rows need a "messages" list)'),
        (8, "expected a JSON object, found an array"),
        (11, "messages[1] is a system message: only the first message may be system"),
    ]
    assert loaded.format == "chat" and loaded.lines == [1, 4, 9, 12] and loaded.total_rows == 11
    assert loaded.examples[0] == Conversation([Message("user", "Name a planet."), Message("assistant", "Mars.")])
    report = format_generative_bad_rows(loaded).splitlines()
    assert report[0].endswith("chat_broken.jsonl: 7 of 11 rows skipped (63.6%, limit data.max_bad_fraction=100%)")
    assert report[2] == '  line 3   messages[1].role = "asistant": expected system | user | assistant'


def test_too_many_bad_rows_stops_with_the_limit_named():
    with pytest.raises(DataError) as caught:
        load_generative_file(FIXTURES / "chat_broken.jsonl", max_bad_fraction=0.5)
    lines = str(caught.value).splitlines()
    assert lines[0].endswith("7 of 11 rows are bad as chat data (63.6%, over data.max_bad_fraction=50%)")
    assert lines[1:] and lines[-1] == "  line 11  messages[1] is a system message: only the first message may be system"
    assert load_generative_file(FIXTURES / "chat_broken.jsonl", max_bad_fraction=0.64).lines == [1, 4, 9, 12]


def test_no_usable_row(tmp_path):
    path = write_lines(tmp_path / "empty.jsonl", [{"text": ""}, {"text": " "}])
    with pytest.raises(DataError, match=r'all 2 rows are bad as text data\n  line 1  empty "text"'):
        load_generative_file(path)


def test_unknown_keys_list_the_keys_and_every_format(tmp_path):
    path = write_lines(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}] * 3)
    with pytest.raises(DataError) as caught:
        load_generative_file(path)
    message = str(caught.value)
    assert "cannot tell the data format" in message and '"question" (3), "answer" (3)' in message
    assert "Set data.format" in message
    assert "  preference         chosen, prompt, rejected" in message and "  hh                 chosen, rejected" in message


def test_rows_of_different_formats_are_ambiguous(tmp_path):
    rows = [{"prompt": "p", "completion": "c"}, {"prompt": "p", "chosen": "a", "rejected": "b"},
            {"prompt": "q", "completion": "d"}]
    with pytest.raises(DataError, match=r"rows in different formats: prompt_completion \(2 rows: lines 1, 3\); "
                                        r"preference \(1 row: line 2\)"):
        load_generative_file(write_lines(tmp_path / "mixed.jsonl", rows))


def test_extra_keys_need_an_explicit_format_then_are_ignored(tmp_path):
    rows = [{"instruction": "Say hi", "input": "", "output": "Hi", "text": "### Instruction: Say hi ..."}]
    path = write_lines(tmp_path / "alpaca_export.jsonl", rows)
    with pytest.raises(DataError, match=r"no format has exactly these keys \(all the keys of alpaca, text are "
                                        r"there, with others\)"):
        load_generative_file(path)
    loaded = load_generative_file(path, format="alpaca")
    assert loaded.examples == [Conversation([Message("user", "Say hi"), Message("assistant", "Hi")])]


def test_unknown_format_name_fails_before_reading():
    with pytest.raises(DataError, match='data.format = "hh_rlhf": unknown format. Did you mean "hh"?'):
        load_generative_file("does-not-exist.jsonl", format="hh_rlhf")


def test_alpaca_to_chat_to_alpaca_round_trip_is_exact(tmp_path):
    original = [json.loads(line) for line in (FIXTURES / "alpaca.jsonl").read_text(encoding="utf-8").splitlines()]
    chat_path = write_jsonl(convert_examples(load_generative_file(FIXTURES / "alpaca.jsonl")), tmp_path / "c.jsonl.gz")
    chat = load_generative_file(chat_path)
    assert chat.format == "chat" and chat.examples[1].messages[0].content == (
        "Translate the sentence into French.\n\nThe cat is on the table.")
    assert convert_examples(chat, to="alpaca") == original


def test_hh_to_preference(tmp_path):
    hh = load_generative_file(FIXTURES / "hh.jsonl")
    records = convert_examples(hh, to="preference")
    assert records[1] == {
        "prompt": [{"role": "user", "content": "How do I boil an egg?"},
                   {"role": "assistant", "content": "Put it in boiling water for about eight minutes."},
                   {"role": "user", "content": "And for a soft one?"}],
        "chosen": [{"role": "assistant", "content": "About six minutes, then cool it in cold water."}],
        "rejected": [{"role": "assistant", "content": "Just guess."}],
    }
    again = load_generative_file(write_jsonl(records, tmp_path / "pref.jsonl"))
    assert again.format == "preference" and again.examples == hh.examples
    assert convert_examples(again, to="hh") == [
        json.loads(line) for line in (FIXTURES / "hh.jsonl").read_text(encoding="utf-8").splitlines()]


def test_conversions_that_cannot_be_made_say_why():
    hh = load_generative_file(FIXTURES / "hh.jsonl")
    with pytest.raises(DataError, match='cannot convert hh data to "chat": a preference pair has two replies .* '
                                        'Use to="preference"'):
        convert_examples(hh)
    chat = load_generative_file(FIXTURES / "chat.jsonl")
    with pytest.raises(DataError, match='chat.jsonl: line 2: cannot convert to "alpaca": alpaca holds one user turn '
                                        "and one reply; this one has system, user, assistant"):
        convert_examples(chat, to="alpaca")
    with pytest.raises(DataError, match='to = "chatml": unknown format'):
        convert_examples(chat, to="chatml")


def test_write_jsonl_replaces_atomically_and_gzips_by_name(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    write_jsonl([{"text": "é"}], target)
    assert target.read_text(encoding="utf-8") == '{"text": "é"}\n'
    write_jsonl([{"text": "a"}, {"text": "b"}], tmp_path / "out.jsonl.gz")
    assert gzip.decompress((tmp_path / "out.jsonl.gz").read_bytes()) == b'{"text": "a"}\n{"text": "b"}\n'

    def failing():
        yield {"text": "partial"}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_jsonl(failing(), target)
    assert target.read_text(encoding="utf-8") == '{"text": "é"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.gz"]  # no temp left


def test_stats_computed_by_hand():
    # Characters (prompt + completion): 24+7=31, 29+6=35, 30+5=35, 25+8=33, 7+2=9.
    # Row 4 equals row 1 once whitespace is normalized.
    stats = dataset_stats_basic(load_generative_file(FIXTURES / "prompt_completion.jsonl"))
    assert stats == {
        "path": str(FIXTURES / "prompt_completion.jsonl"), "format": "prompt_completion", "kind": "sft",
        "rows": 5, "bad_rows": 0, "total_rows": 5,
        "turns": {"min": 2, "mean": 2.0, "max": 2},
        "chars": {"min": 9, "mean": 28.6, "median": 33, "p95": 35, "max": 35},
        "duplicates": 1,
    }


def test_stats_of_preference_pairs_and_plain_text():
    # hh.jsonl row 2: prompt 21+48+19 characters, longer reply 46 -> 134; 3 prompt turns + reply.
    stats = dataset_stats_basic(load_generative_file(FIXTURES / "hh.jsonl"))
    assert stats["turns"] == {"min": 2, "mean": 3.0, "max": 4} and stats["chars"]["max"] == 134
    text = dataset_stats_basic(load_generative_file(FIXTURES / "text.jsonl"))
    assert text["turns"] is None and text["chars"]["min"] == 47 and text["duplicates"] == 0
