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
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with self.lock, torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        vectors = torch.nn.functional.normalize(pooled, dim=-1)
        return list(zip(vectors.tolist(), batch["attention_mask"].sum(1).tolist()))
