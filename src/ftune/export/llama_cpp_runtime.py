"""The llama.cpp side of an export check (llama-cpp-python): response log-likelihood from its
logits, and greedy replies, token by token, on the very token ids the PyTorch run sees."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def require_llama_cpp():
    try:
        import llama_cpp
    except ImportError as error:  # pragma: no cover - installed by setup.sh
        from ftune.errors import FtuneError

        raise FtuneError("checking a GGUF export needs llama-cpp-python (pip install llama-cpp-python==0.3.36); "
                         "or pass --no-check") from error
    return llama_cpp


class LlamaCppLanguageModel:
    def __init__(self, model_path: Path, *, lora_path: Path | None = None, n_ctx: int = 2048,
                 threads: int | None = None):
        llama_cpp = require_llama_cpp()
        import os

        self.llm = llama_cpp.Llama(str(model_path), lora_path=str(lora_path) if lora_path else None, n_ctx=n_ctx,
                                   n_batch=min(512, n_ctx), logits_all=True, verbose=False,
                                   n_threads=threads or max(1, min(os.cpu_count() or 1, 16)))

    def logits(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return np.asarray(self.llm.scores[: len(ids)], dtype=np.float32)

    def response_nll(self, input_ids: list[int], labels: list[int]) -> float:
        logits = self.logits(input_ids)[:-1]
        targets = np.asarray(labels[1:])
        keep = targets != -100
        rows = logits[keep]
        rows = rows - rows.max(axis=1, keepdims=True)
        logp = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(rows)), targets[keep]].sum())

    def greedy_reply(self, prompt_ids: list[int], max_new_tokens: int, stop_ids: Sequence[int]) -> list[int]:
        self.llm.reset()
        self.llm.eval(prompt_ids)
        reply: list[int] = []
        for _ in range(max_new_tokens):
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            if token in stop_ids:
                break
            reply.append(token)
            self.llm.eval([token])
        return reply

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
