"""Inputs found by a probe of bad cases (issue 14): each gets a clear ftune error that names the
file or the key, never a traceback, and nothing is lost."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import FIXTURES, only_run_dir, run_ftune

GEN = FIXTURES / "gen"


def _clear_error(result, *expected: str) -> None:
    assert result.returncode != 0, result.stdout[-1000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, (text, result.stderr[-2000:])


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, tiny_bert_dir):
    cwd = tmp_path_factory.mktemp("classifier")
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                       "train.epochs=1", "model.max_length=32", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(cwd)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_llama_dir):
    cwd = tmp_path_factory.mktemp("sft")
    result = run_ftune("train", f"model={tiny_llama_dir}", f"data.train={GEN / 'alpaca.jsonl'}", "train.max_steps=2",
                       "model.max_length=64", "generate.samples=0", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(cwd)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_damaged_saved_model_is_a_clear_error_for_eval_predict_and_generate(damage, classifier_run, sft_run,
                                                                              tmp_path):
    runs = {}
    for name, run in (("classifier", classifier_run), ("sft", sft_run)):
        copy = tmp_path / name / "runs" / run.name
        shutil.copytree(run, copy)
        weights = copy / "model" / "adapter_model.safetensors"
        if damage == "deleted":
            weights.unlink()
        else:
            weights.write_bytes(weights.read_bytes()[:1000])
        runs[name] = copy
    expected = "missing" if damage == "deleted" else "truncated or corrupted"
    _clear_error(run_ftune("eval", str(runs["classifier"]), "--data", str(FIXTURES / "reviews.csv"), cwd=tmp_path),
                 "adapter_model.safetensors", expected)
    _clear_error(run_ftune("predict", str(runs["classifier"]), "a warm film", cwd=tmp_path), expected)
    _clear_error(run_ftune("generate", str(runs["sft"]), "Give three tips", cwd=tmp_path), expected)


def test_max_length_beyond_the_model_s_positions_is_refused_before_loading(tiny_bert_dir, tmp_path):
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                       "model.max_length=100000", cwd=tmp_path)
    _clear_error(result, "model.max_length = 100000", "positions")
    assert not (tmp_path / "runs").exists()


def test_a_directory_as_data_file_is_named_a_directory(tmp_path):
    _clear_error(run_ftune("train", f"data.train={tmp_path}", cwd=tmp_path), "data.train", "is a directory")


def _chat_with_one_bad_row(path):
    """30 good chat rows and, at line 4, one that is not JSON: under the 5% bad-row limit."""
    lines = (GEN / "chat.jsonl").read_text().splitlines() * 3
    lines.insert(3, '{"messages": [{"role": "user", "content": "unterminated"}')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_data_convert_never_loses_data_and_writes_only_what_it_reads_back(tmp_path):
    source = _chat_with_one_bad_row(tmp_path / "chat.jsonl")
    original = source.read_bytes()
    _clear_error(run_ftune("data", "convert", str(source), str(source), "--force", cwd=tmp_path), "is the input file")
    assert source.read_bytes() == original  # its bad rows are still there
    _clear_error(run_ftune("data", "convert", str(source), str(tmp_path), cwd=tmp_path), "is a directory")
    _clear_error(run_ftune("data", "convert", str(source), str(tmp_path / "out.csv"), cwd=tmp_path), ".jsonl")
    labeled = run_ftune("data", "convert", str(FIXTURES / "reviews.csv"), str(tmp_path / "x.jsonl"), cwd=tmp_path)
    _clear_error(labeled, "Set --from to one of these")  # the option data convert has, not data.format
    assert "data.format" not in labeled.stderr
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    _clear_error(run_ftune("data", "convert", str(source), str(out), cwd=tmp_path), "already exists", "--force")
    assert out.read_text() == "keep me\n"
    replaced = run_ftune("data", "convert", str(source), str(out), "--force", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert "1 bad rows skipped" in replaced.stdout and len(out.read_text().splitlines()) == 30


def test_data_inspect_says_how_many_bad_rows_it_skipped(tiny_llama_dir, tmp_path):
    source = _chat_with_one_bad_row(tmp_path / "chat.jsonl")
    result = run_ftune("data", "inspect", f"model={tiny_llama_dir}", f"data.train={source}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "30 rows (1 bad rows skipped, first at line 4)" in result.stdout


def test_bitfit_on_a_model_without_biases_is_refused_before_the_data_loads(tiny_llama_dir, tmp_path):
    missing = tmp_path / "not-read.jsonl"  # never opened: the refusal comes from the model's config.json
    missing.write_text("not json at all\n")
    result = run_ftune("train", f"model={tiny_llama_dir}", "method=bitfit", f"data.train={missing}", cwd=tmp_path)
    _clear_error(result, "method.name = 'bitfit'", "no bias terms")
    assert "not json" not in result.stderr and not (tmp_path / "runs").exists()


def test_a_tsv_named_csv_is_blamed_on_the_delimiter_not_the_label_column(tiny_bert_dir, tmp_path):
    wrong_name = tmp_path / "reviews.csv"
    shutil.copy(FIXTURES / "reviews.tsv", wrong_name)
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={wrong_name}", cwd=tmp_path)
    _clear_error(result, "looks tab-separated", "data.delimiter")
    assert "label_column" not in result.stderr


def test_predict_refuses_empty_texts_instead_of_guessing_a_label(classifier_run, tmp_path):
    _clear_error(run_ftune("predict", str(classifier_run), "a warm film", "", "   ", cwd=tmp_path),
                 "texts 2, 3 (of 3) are empty")
    blank_rows = tmp_path / "texts.csv"
    blank_rows.write_text("text,label\na warm film,positive\n,negative\n   ,positive\n")
    result = run_ftune("predict", str(classifier_run), "--data", str(blank_rows), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == 1  # only the row with text
    assert "line 3" in result.stderr and "line 4" in result.stderr  # the blank ones, reported by line


def test_labels_spelled_differently_are_one_label_with_a_notice(tmp_path):
    from ftune.config.schema import DataConfig
    from ftune.data.prepare import build_classification_data

    rows = [("a warm film", "positive"), ("a fine cast", "Positive "), ("great fun", "POSITIVE"),
            ("a dull plot", "negative"), ("two hours lost", "negative"), ("weak jokes", "Negative")] * 4
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"{t} {i},{label}\n" for i, (t, label) in enumerate(rows)))
    validation = tmp_path / "validation.csv"
    validation.write_text("text,label\nlovely,POSITIVE\nawful,negative\nodd,neutral\n")
    data = build_classification_data(DataConfig(train=str(train), validation=str(validation), max_bad_fraction=0.5),
                                     seed=1)
    assert data.label_names == ["negative", "positive"]
    merged = next(n for n in data.notices if "differ only in case" in n)
    assert '"POSITIVE" (4 rows) -> "positive"' in merged and '"Negative" (4 rows) -> "negative"' in merged
    assert '"Positive" (4 rows) -> "positive"' in merged  # the stripped spelling; spaces never count
    assert [data.label_names[i] for i in data.validation.label_ids] == ["positive", "negative"]
    assert any('line 4  unknown label "neutral"' in n for n in data.notices)  # a real unknown stays one
