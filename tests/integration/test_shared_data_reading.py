"""The classification reader on the real shared data sets (../shared/data beside the repo)."""


import pytest

from tests.conftest import shared_file

from ftune.data.classification import load_labeled_file
from ftune.data.readers import read_table


pytestmark = pytest.mark.integration



def test_sst2_tsv_header_detected_and_every_row_read():
    path = shared_file("sst2/train.tsv")
    assert read_table(path).columns == ["sentence", "label"]
    examples = load_labeled_file(path)
    assert examples.text_columns == ["sentence"] and examples.label_column == "label"
    assert len(examples.texts) == examples.total_rows == 67_347 and not examples.bad_rows
    assert set(examples.labels) == {"0", "1"}
    assert examples.labels.count("0") == 29_779  # class balance given in the data README
    assert examples.texts[0] == "hide new secretions from the parental units"
    assert examples.lines[0] == 2 and examples.lines[-1] == 67_348


def test_ag_news_headerless_csv_columns_detected():
    path = shared_file("ag_news/train.csv")
    assert read_table(path).columns is None
    examples = load_labeled_file(path)
    assert examples.label_column == 0 and examples.text_columns == [1, 2]
    assert len(examples.texts) == examples.total_rows == 9_979 and not examples.bad_rows
    assert sorted(set(examples.labels)) == ["1", "2", "3", "4"]
    assert examples.labels.count("1") == 2_511  # class balance given in the data README
    title, description = examples.texts[0].split("\n", 1)
    assert title == "Housing Starts Increased 0.6 Percent"
    assert description.startswith("Housing construction in August surged")
