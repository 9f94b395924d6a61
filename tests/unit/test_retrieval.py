"""Retrieval for the retrieval-augmented baseline, and demonstrations put before held-out
examples: the right neighbours on built cases, and the same scored tokens as zero-shot."""

from __future__ import annotations

import pytest

from ftune.data.conversation import Conversation, Message, PlainText
from ftune.eval.demonstrations import demonstrated_items, fixed_demonstrations, retrieved_demonstrations
from ftune.eval.retrieval import BM25Index, nearest_training_rows

TRAIN = ["the cat sat on the mat", "stock markets fell sharply today", "a recipe for tomato soup",
         "the dog chased the cat around the garden", "interest rates and stock prices"]


def test_bm25_finds_the_rows_that_share_the_rare_words_most_similar_first():
    found = nearest_training_rows("bm25", TRAIN, ["why did stock markets fall", "my cat and my dog",
                                                  "hot soup recipe"], k=2)
    assert found[0] == [1, 4] and found[1][0] == 3 and found[2][0] == 2
    scores = BM25Index(TRAIN).scores(["cat"])[0]
    # a shorter row with the word scores above a longer one with it; rows without it score 0
    assert scores[0] > scores[3] > 0 and scores[1] == scores[2] == scores[4] == 0


def test_minilm_retrieves_by_meaning_not_shared_words(tmp_path, monkeypatch):
    monkeypatch.setenv("FTUNE_CACHE", str(tmp_path))  # vectors cached under the test's own directory
    train = ["How do I bake a loaf of bread at home?", "What is the capital city of France?",
             "Tips for running a first marathon", "How can I lower my monthly electricity bill?"]
    queries = ["recipe for homemade sourdough", "Which city is Paris the capital of?", "training for a long race",
               "ways to save on power costs"]
    found = nearest_training_rows("minilm-l6", train, queries, k=1)
    assert found == [[0], [1], [2], [3]]
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 2  # training rows and queries, cached


def _alpaca(instruction: str, reply: str) -> Conversation:
    return Conversation([Message("user", instruction), Message("assistant", reply)])


@pytest.fixture(scope="module")
def template_and_tokenizer(tiny_llama_dir):
    from ftune.data.templates import resolve_template
    from ftune.models.load import load_tokenizer

    tokenizer = load_tokenizer(tiny_llama_dir)
    return resolve_template("chatml", tokenizer), tokenizer


def test_demonstrations_score_exactly_the_held_out_reply_tokens(template_and_tokenizer):
    from ftune.data.encode import encode_examples

    template, tokenizer = template_and_tokenizer
    train = [_alpaca("name a fruit", "apple"), _alpaca("name a colour", "red"), PlainText("no prompt here")]
    held_out = [_alpaca("name a vegetable", "carrot please"), _alpaca("name an animal", "cat")]
    alone, _ = encode_examples(held_out, template, tokenizer, 256)
    shown = demonstrated_items(held_out, train, [[0, 1], [1]], template, tokenizer, 256)
    assert shown.shots == [2, 1]
    for zero, few in zip(alone, shown.items):
        assert len(few["input_ids"]) > len(zero["input_ids"])
        assert [t for t in few["labels"] if t != -100] == [t for t in zero["labels"] if t != -100]
    # demonstrations that do not fit are dropped, the least wanted first; none fit: zero-shot
    tight = len(alone[0]["input_ids"]) + 12
    fitted = demonstrated_items(held_out[:1], train, [[0, 1]], template, tokenizer, tight)
    assert fitted.shots == [1] and len(fitted.items[0]["input_ids"]) <= tight
    none = demonstrated_items(held_out[:1], train, [[0, 1]], template, tokenizer, len(alone[0]["input_ids"]))
    assert none.shots == [0] and none.items[0] == alone[0]
    assert none.summary(2) == {"shots_wanted": 2, "mean_shots": 0.0, "without_shots": 1}


def test_fixed_and_retrieved_demonstrations_choose_training_conversations():
    train = [_alpaca(text, "ok") for text in TRAIN] + [PlainText("plain text is never shown")]
    fixed = fixed_demonstrations(train, 2, seed=0)
    assert len(set(fixed)) == 2 and 5 not in fixed and fixed == fixed_demonstrations(train, 2, seed=0)
    found = retrieved_demonstrations("bm25", train, [_alpaca("stock markets", "?")], 2)
    assert found == [[1, 4]]
