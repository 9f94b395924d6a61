"""Finding the training examples most similar to a held-out prompt: the retrieval half of the
retrieval-augmented prompting baseline.

Two indexes behind one call, ``nearest_training_rows``: BM25 over words (scikit-learn's
tokenizer and sparse matrices), or a sentence encoder's cosine similarity (MiniLM by default;
vectors cached on disk by ``FrozenEncoder``)."""

from __future__ import annotations

from typing import Sequence

BM25 = "bm25"
ENCODER_MAX_LENGTH = 256


class BM25Index:
    """Okapi BM25 (k1 = 1.5, b = 0.75, Lucene's idf) over lower-cased word tokens."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75):
        import numpy as np
        from scipy import sparse
        from sklearn.feature_extraction.text import CountVectorizer

        self.vectorizer = CountVectorizer(lowercase=True, token_pattern=r"(?u)\b\w+\b")
        counts = sparse.csr_matrix(self.vectorizer.fit_transform(texts), dtype=np.float64)
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
        idf = np.log((len(lengths) - document_frequency + 0.5) / (document_frequency + 0.5) + 1.0)
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        tf = counts.data
        counts.data = idf[counts.indices] * tf * (k1 + 1) / (tf + norm[rows])
        self.weights = counts.T.tocsr()  # terms x documents

    def scores(self, queries: Sequence[str]):
        """Queries x documents BM25 scores (each query term counted once)."""
        query_terms = self.vectorizer.transform(queries)
        query_terms.data[:] = 1.0
        return (query_terms @ self.weights).toarray()


def nearest_training_rows(kind: str, train_texts: Sequence[str], queries: Sequence[str], k: int,
                          block: int = 256) -> list[list[int]]:
    """For each query, the indices of its ``k`` most similar ``train_texts``, most similar first.
    ``kind`` is ``bm25`` or a sentence-encoder model (built-in name or directory)."""
    import numpy as np

    k = min(k, len(train_texts))
    if k <= 0 or not queries:
        return [[] for _ in queries]
    if kind == BM25:
        index = BM25Index(train_texts)
        found = []
        for start in range(0, len(queries), block):
            scores = index.scores(queries[start:start + block])
            # stable order among equal scores: the earlier training row first
            found += np.argsort(-scores, axis=1, kind="stable")[:, :k].tolist()
        return found
    from ftune.eval.embedding_baselines import FrozenEncoder, nearest

    encoder = FrozenEncoder(kind, ENCODER_MAX_LENGTH)
    train_vectors = encoder.vectors(list(train_texts))
    indices, _ = nearest(train_vectors, encoder.vectors(list(queries)), k, block)
    return indices.tolist()
