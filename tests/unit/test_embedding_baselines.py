"""Baselines from the frozen base model: nearest-neighbour retrieval on a built case, the vector
cache (reused, and invalidated when the texts change), and pooling that ignores padding."""

from __future__ import annotations

import numpy as np

from ftune.eval.embedding_baselines import FrozenEncoder, knn_baseline, nearest, vector_logreg_baseline


def _unit(angles_degrees):
    radians = np.radians(angles_degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_nearest_returns_the_right_neighbours_most_similar_first():
    train = _unit([0, 10, 90, 100, 180])
    queries = _unit([3, 97, 175])
    indices, similarities = nearest(train, queries, k=2, block=2)  # blocks smaller than the queries
    assert indices.tolist() == [[0, 1], [3, 2], [4, 3]]  # 175 degrees: 180 first, then 100
    assert (np.diff(similarities, axis=1) <= 0).all()


def test_knn_and_vector_logreg_separate_clean_clusters():
    train = _unit([0, 5, 10, 15, 170, 175, 180, 185])
    train_ids = [0, 0, 0, 0, 1, 1, 1, 1]
    held_out = _unit([3, 12, 178, 183])
    for scores in (knn_baseline(train, train_ids, held_out, [0, 0, 1, 1], ["a", "b"], k=3),
                   vector_logreg_baseline(train, train_ids, held_out, [0, 0, 1, 1], ["a", "b"])):
        assert scores["accuracy"] == 1.0 and scores["_predicted_ids"] == [0, 0, 1, 1]


def test_vectors_are_cached_and_embedded_again_when_the_texts_change(tiny_bert_dir, tmp_path):
    texts = ["a warm film", "a dull plot", "great fun for everyone"]
    first = FrozenEncoder(str(tiny_bert_dir), 32, cache=tmp_path)
    vectors = first.vectors(texts)
    assert vectors.shape[0] == 3 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert (first.computed, first.reused) == (3, 0)
    again = FrozenEncoder(str(tiny_bert_dir), 32, cache=tmp_path)
    assert np.array_equal(again.vectors(texts), vectors) and (again.computed, again.reused) == (0, 3)
    again.vectors(texts[:2] + ["a dull plot, changed"])
    assert again.computed == 3  # other texts: other vectors
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_a_decoder_s_vector_is_its_last_real_token_whatever_the_padding(tiny_llama_dir, tmp_path):
    encoder = FrozenEncoder(str(tiny_llama_dir), 32, cache=tmp_path)
    assert encoder.pooling == "last"
    alone = encoder.vectors(["a warm film"])
    padded = encoder.vectors(["a warm film", "a dull plot that goes on and on and on"])  # one batch, padded
    assert np.allclose(alone[0], padded[0], atol=1e-5)
