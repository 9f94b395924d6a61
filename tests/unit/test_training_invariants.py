"""Invariants that catch silent training bugs (issue 14): the accumulation window, the batching
and the labels must not change what is learned."""

from __future__ import annotations

import pytest

from tests.conftest import FIXTURES
from tests.unit.test_memory_fit import logged_losses, sft_config

GEN = FIXTURES / "gen"


def _train(tiny_llama_dir, directory, *settings):
    from ftune.recipes.dispatch import train_for_objective

    return train_for_objective(sft_config(tiny_llama_dir, directory, *settings), echo=lambda *_: None)


def test_batch_1_with_accumulation_8_learns_what_batch_8_does(tiny_llama_dir, tmp_path):
    """Rows of different lengths: the loss is normalised by the trained tokens of the whole
    accumulation window, not averaged per micro-batch, so both give the same losses and steps."""
    wide = _train(tiny_llama_dir, tmp_path / "wide", "train.batch_size=8", "train.gradient_accumulation_steps=1")
    deep = _train(tiny_llama_dir, tmp_path / "deep", "train.batch_size=1", "train.gradient_accumulation_steps=8")
    assert logged_losses(deep.run_dir) == pytest.approx(logged_losses(wide.run_dir), rel=1e-4)
    after = wide.metrics["validation"]["after"]["loss"]
    assert deep.metrics["validation"]["after"]["loss"] == pytest.approx(after, rel=1e-4)
    assert after != pytest.approx(wide.metrics["validation"]["before"]["loss"], rel=1e-3)  # it trained


def test_padded_and_padding_free_batches_learn_the_same(tiny_llama_dir, tmp_path):
    padded = _train(tiny_llama_dir, tmp_path / "padded", "train.batching=group_by_length")
    packed = _train(tiny_llama_dir, tmp_path / "packed", "train.batching=padding_free")
    assert logged_losses(packed.run_dir) == pytest.approx(logged_losses(padded.run_dir), rel=1e-4)


@pytest.mark.parametrize("name", ["alpaca.jsonl", "chat.jsonl", "prompt_completion.jsonl", "hh.jsonl"])
def test_every_example_trains_on_tokens_and_its_labels_end_with_the_end_of_turn(name, tiny_llama_dir):
    from ftune.data.encode import encode_examples, stop_token_ids
    from ftune.data.generative import load_generative_file
    from ftune.data.templates import resolve_template
    from ftune.models.load import load_tokenizer

    tokenizer = load_tokenizer(tiny_llama_dir)
    template = resolve_template("auto", tokenizer)
    examples = load_generative_file(GEN / name).examples
    items, _ = encode_examples(examples, template, tokenizer, max_length=512)
    assert items and len(items) == len(examples)
    stops = set(stop_token_ids(tokenizer))
    for item in items:
        trained = [label for label in item["labels"] if label != -100]
        assert trained, "an example with no trained token"
        assert trained[-1] in stops, "the model would never learn to stop"


def test_an_example_truncated_to_no_trained_token_is_dropped_not_trained_on(tiny_llama_dir):
    from ftune.data.conversation import Conversation, Message
    from ftune.data.encode import encode_examples
    from ftune.data.templates import resolve_template
    from ftune.models.load import load_tokenizer

    tokenizer = load_tokenizer(tiny_llama_dir)
    template = resolve_template("auto", tokenizer)
    long_prompt = Conversation([Message("user", "film " * 300), Message("assistant", "good")])
    short = Conversation([Message("user", "film"), Message("assistant", "good")])
    items, truncated = encode_examples([long_prompt, short], template, tokenizer, max_length=32)
    assert len(items) == 1 and truncated >= 1
