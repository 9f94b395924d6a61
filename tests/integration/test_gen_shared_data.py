"""The generative loader on the real shared data sets (../shared/data beside the repo)."""

import json

import pytest

from tests.conftest import shared_file

from ftune.data.conversation import Message
from ftune.data.formats import get_format
from ftune.data.generative import convert_examples, dataset_stats_basic, load_generative_file


pytestmark = pytest.mark.integration



def test_alpaca_2k_loads_every_row_and_survives_conversion():
    loaded = load_generative_file(shared_file("alpaca/alpaca_2k.jsonl"))
    assert loaded.format == "alpaca" and len(loaded.examples) == loaded.total_rows == 2_000
    assert not loaded.bad_rows and loaded.lines == list(range(1, 2_001))
    assert loaded.examples[0].messages[0] == Message(
        "user", "Create a list of the 3 most significant inventions in the 20th century")
    # 767 rows have an input (data README): each becomes "instruction\n\ninput".
    raw = [json.loads(line) for line in open(loaded.path, encoding="utf-8")]
    assert sum(bool(r["input"]) for r in raw) == 767
    alpaca = get_format("alpaca")
    assert [alpaca.parse(r) for r in convert_examples(loaded, to="alpaca")] == loaded.examples
    assert dataset_stats_basic(loaded)["duplicates"] == 0


def test_hh_rlhf_parses_all_but_seven_rows_each_for_a_stated_reason():
    path = shared_file("hh_rlhf/train.jsonl")
    loaded = load_generative_file(path)
    assert loaded.format == "hh" and loaded.kind == "preference" and loaded.total_rows == 5_000
    assert len(loaded.examples) == 4_993 and len(loaded.bad_rows) / loaded.total_rows <= 0.05
    assert [(b.line, b.reason) for b in loaded.bad_rows] == [
        (465, "rejected ends with a Human turn, expected a final Assistant reply"),
        *[(line, "rejected: the final Assistant reply is empty")
          for line in (1563, 2103, 2279, 2583, 3606, 4019)],
    ]
    # README: 1,589 single-turn dialogues; 3 of them (lines 2103, 3606, 4019) are skipped above.
    assert sum(len(pair.prompt) == 1 for pair in loaded.examples) == 1_586
    assert all(pair.prompt[-1].role == "user" for pair in loaded.examples)
    # Lossless: writing the pairs back as transcripts gives the original strings.
    originals = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert convert_examples(loaded, to="hh") == [originals[line - 1] for line in loaded.lines]
