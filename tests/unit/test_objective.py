"""The objective follows the data unless set, and impossible pairings fail before loading."""

from __future__ import annotations

import pytest

from ftune.settings import load_config
from ftune.errors import ConfigError, DataError
from ftune.training.objective import resolve_objective
from tests.conftest import FIXTURES

GEN = FIXTURES / "gen"


@pytest.mark.parametrize("path, expected", [
    (FIXTURES / "reviews.csv", "classification"),
    (FIXTURES / "headerless_news.csv", "classification"),
    (GEN / "alpaca.jsonl", "sft"),
    (GEN / "chat.jsonl", "sft"),
    (GEN / "text.jsonl", "sft"),
    (GEN / "preference.jsonl", "dpo"),
    (GEN / "hh.jsonl", "dpo"),
])
def test_objective_from_the_data(path, expected, tiny_llama_dir):
    config = load_config(None, [f"model={tiny_llama_dir}", f"data.train={path}"])
    assert resolve_objective(config) == expected


def test_demo_data_is_classification():
    assert resolve_objective(load_config()) == "classification"


def test_sft_on_preference_pairs_trains_on_the_chosen_replies(tiny_llama_dir):
    from ftune.data.encode import encode_example
    from ftune.data.generative import load_generative_file
    from ftune.data.templates import resolve_template
    from ftune.models.load import load_causal_lm

    config = load_config(None, [f"model={tiny_llama_dir}", f"data.train={GEN / 'hh.jsonl'}", "objective=sft"])
    assert resolve_objective(config) == "sft"
    tokenizer = load_causal_lm(str(tiny_llama_dir)).tokenizer
    template = resolve_template("chatml", tokenizer)
    pairs = load_generative_file(GEN / "preference.jsonl").examples
    for pair in pairs:
        item = encode_example(pair, template, tokenizer, max_length=512)
        trained = tokenizer.decode([t for t, label in zip(item.input_ids, item.labels) if label != -100])
        normalise = lambda text: " ".join(tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]).split())  # noqa: E731
        # the loss falls on the chosen reply (and its end-of-turn), never on the rejected one
        assert normalise(pair.chosen) in " ".join(trained.split())
        assert normalise(pair.rejected) not in " ".join(trained.split())


def test_mismatches_fail_with_the_key_named(tiny_bert_dir, tiny_llama_dir):
    with pytest.raises(ConfigError, match="is an encoder"):
        resolve_objective(load_config(None, [f"model={tiny_bert_dir}", f"data.train={GEN / 'chat.jsonl'}"]))
    with pytest.raises(ConfigError, match="calls for objective=sft"):
        resolve_objective(load_config(None, [f"model={tiny_llama_dir}", f"data.train={GEN / 'chat.jsonl'}",
                                             "objective=classification"]))
    with pytest.raises(ConfigError, match='Did you mean "alpaca"'):
        load_config(None, [f"model={tiny_llama_dir}", f"data.train={GEN / 'chat.jsonl'}", "data.format=alpacca"])
    with pytest.raises(ConfigError, match='Did you mean "chatml"'):
        load_config(None, ["data.template=chatmll"])


def test_a_file_mixing_formats_is_an_error(tmp_path, tiny_llama_dir):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"prompt": "a", "completion": "b"}\n{"instruction": "c", "output": "d"}\n')
    with pytest.raises(DataError, match="rows in different formats"):
        resolve_objective(load_config(None, [f"model={tiny_llama_dir}", f"data.train={mixed}"]))
