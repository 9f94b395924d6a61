"""Baselines from the pre-trained model itself, with no fine-tuning: logistic regression on its
frozen sentence vectors, and k-nearest-neighbour retrieval over the training rows' vectors.

Vectors are cached on disk (``<ftune cache>/embeddings/``), keyed by the model's files, the
pooling, the length limit and the texts themselves, so a second run on the same data reads
them back and a changed file is embedded again."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

KNN_NEIGHBOURS = 10


def embedding_cache_key(model_dir: Path, pooling: str, max_length: int, texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in Path(model_dir).glob("*")
                   if p.is_file())
    digest.update(json.dumps([str(Path(model_dir).resolve()), files, pooling, max_length]).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()[:32]


class FrozenEncoder:
    """The base model's body (no head, no adapter), loaded on first use, with a vector cache."""

    def __init__(self, model_name: str, max_length: int, cache: Path | None = None):
        from ftune.models.load import model_kind, resolve_model_dir
        from ftune.models.registry import cache_dir

        self.model_dir = resolve_model_dir(model_name)
        self.pooling = "last" if model_kind(self.model_dir) == "decoder" else "mean"
        self.max_length = max_length
        self.cache = cache or cache_dir() / "embeddings"
        self._model = self._tokenizer = None
        self.computed = self.reused = 0  # texts embedded now / read from the cache

    def vectors(self, texts: Sequence[str]):
        import numpy as np

        path = self.cache / f"{embedding_cache_key(self.model_dir, self.pooling, self.max_length, texts)}.npy"
        if path.is_file():
            self.reused += len(texts)
            return np.load(path)
        from ftune.models.sentence_vectors import text_vectors

        model, tokenizer = self._load()
        found = text_vectors(model, tokenizer, list(texts), pooling=self.pooling, max_length=self.max_length,
                             progress=len(texts) > 2000)
        self.computed += len(texts)
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.stem}.{os.getpid()}.npy")
            np.save(partial, found)
            os.replace(partial, path)
        except OSError:
            pass  # a cache that cannot be written costs time next run, never this one
        return found

    def _load(self):
        if self._model is None:
            from transformers import AutoModel

            from ftune.models.load import load_tokenizer

            self._tokenizer = load_tokenizer(self.model_dir)
            self._model = AutoModel.from_pretrained(self.model_dir).eval()
        return self._model, self._tokenizer


def nearest(train_vectors, query_vectors, k: int, block: int = 256):
    """Indices and cosine similarities of each query's ``k`` nearest training vectors (unit
    vectors), most similar first; in blocks of queries, never the whole matrix at once."""
    import numpy as np

    k = min(k, len(train_vectors))
    indices = np.zeros((len(query_vectors), k), dtype=np.int64)
    similarities = np.zeros((len(query_vectors), k), dtype=np.float32)
    for start in range(0, len(query_vectors), block):
        scores = query_vectors[start:start + block] @ train_vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        ordered = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        indices[start:start + block] = ordered
        similarities[start:start + block] = np.take_along_axis(scores, ordered, axis=1)
    return indices, similarities


def knn_baseline(train_vectors, train_ids: Sequence[int], eval_vectors, eval_ids: Sequence[int],
                 label_names: list[str], k: int = KNN_NEIGHBOURS) -> dict[str, Any]:
    """Each held-out row takes the similarity-weighted vote of its k nearest training rows."""
    import numpy as np

    from ftune.eval.baselines import PREDICTIONS
    from ftune.eval.metrics import classification_metrics

    indices, similarities = nearest(train_vectors, eval_vectors, k)
    labels = np.asarray(train_ids)[indices]
    votes = np.zeros((len(eval_vectors), len(label_names)))
    for column in range(indices.shape[1]):
        np.add.at(votes, (np.arange(len(eval_vectors)), labels[:, column]), np.maximum(similarities[:, column], 0) + 1e-6)
    predicted = votes.argmax(axis=1).tolist()
    return {**classification_metrics(list(eval_ids), predicted, label_names), PREDICTIONS: predicted}


def vector_logreg_baseline(train_vectors, train_ids: Sequence[int], eval_vectors, eval_ids: Sequence[int],
                           label_names: list[str]) -> dict[str, Any]:
    """Logistic regression on the frozen vectors."""
    from sklearn.linear_model import LogisticRegression

    from ftune.eval.baselines import PREDICTIONS
    from ftune.eval.metrics import classification_metrics

    classifier = LogisticRegression(max_iter=2000, C=4.0).fit(train_vectors, list(train_ids))
    predicted = classifier.predict(eval_vectors).tolist()
    return {**classification_metrics(list(eval_ids), predicted, label_names), PREDICTIONS: predicted}
