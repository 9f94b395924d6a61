"""Labeled rows phrased as chat, and label choice by likelihood."""

from __future__ import annotations

import pytest
import torch

from ftune.data.labeled_chat import few_shot_turns, label_words_for, to_conversations
from ftune.errors import ConfigError


def test_label_words_default_to_the_labels_and_must_cover_them():
    assert label_words_for(["neg", "pos"], None) == ["neg", "pos"]
    assert label_words_for(["0", "1"], {"0": "negative", "1": "positive"}) == ["negative", "positive"]
    with pytest.raises(ConfigError, match="no word for label"):
        label_words_for(["0", "1", "2"], {"0": "a", "1": "b"})
    with pytest.raises(ConfigError, match="share a word"):
        label_words_for(["0", "1"], {"0": "same", "1": "same"})


def test_conversations_and_few_shot_turns_cycle_through_labels():
    texts, labels = ["t0", "t1", "t2", "t3", "t4"], [0, 0, 0, 1, 1]
    conversation = to_conversations(texts[:1], labels[:1], ["bad", "good"], "Classify.")[0]
    assert [(m.role, m.content) for m in conversation.messages] == [("user", "Classify.\n\nt0"), ("assistant", "bad")]
    turns = few_shot_turns(texts, labels, ["bad", "good"], "Classify.", shots=3)
    replies = [m.content for m in turns if m.role == "assistant"]
    assert replies == ["bad", "good", "bad"] and len(turns) == 6


class FavouriteTokenLM(torch.nn.Module):
    """A stand-in language model that finds one token far likelier than any other."""

    def __init__(self, vocab_size: int, favourite: int):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(vocab_size))
        with torch.no_grad():
            self.bias[favourite] = 10.0

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.bias.expand(*input_ids.shape, -1))


def test_label_choice_follows_the_likelier_reply(tiny_llama_dir):
    from ftune.data.templates import resolve_template
    from ftune.eval.label_scoring import label_accuracy
    from ftune.models.load import load_tokenizer

    tokenizer = load_tokenizer(tiny_llama_dir)
    template = resolve_template("chatml", tokenizer)
    for favourite, expected in (("good", [[0, 1], [0, 1]]), ("bad", [[1, 0], [1, 0]])):
        model = FavouriteTokenLM(len(tokenizer), tokenizer.convert_tokens_to_ids(favourite))
        metrics = label_accuracy(model, tokenizer, template, ["a film", "a book"], [1, 0],
                                 ["negative", "positive"], ["bad", "good"], "Classify.")
        assert metrics["confusion_matrix"]["rows_true_columns_predicted"] == expected
