"""Sentence embeddings from an encoder: mean-pooled over the real tokens, then L2-normalised,
as sentence-transformers' all-MiniLM-L6-v2 pipeline does."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EmbeddingBackend:
    model: Any
    tokenizer: Any
    max_length: int = 256
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, directory: Path) -> "EmbeddingBackend":
        from transformers import AutoModel

        from ftune.models.load import load_tokenizer

        return cls(AutoModel.from_pretrained(directory).eval(), load_tokenizer(directory))

    def embed(self, texts: list[str]) -> list[tuple[list[float], int]]:
        """(vector, tokens read) for each text."""
        from ftune.models.sentence_vectors import pooled_vectors

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with self.lock:
            vectors = pooled_vectors(self.model, dict(batch), "mean")
        return list(zip(vectors.tolist(), batch["attention_mask"].sum(1).tolist()))
