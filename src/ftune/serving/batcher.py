"""Dynamic batching of generation requests on one base model.

Requests that arrive within a short wait window are decoded together, one forward pass per
token for the whole batch. Rows may use different adapters when every technique in the batch
can mix (PEFT's ``adapter_names``, ``Method.serves_mixed_batches``); otherwise each adapter's
rows run as a batch of their own, in turn. Each row has its own sampling and seed, so a reply
does not depend on what it was batched with (up to float rounding)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ftune.serving.sampling import Sampling, next_token

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class Job:
    """One request: its adapter (served name), prompt and sampling; tokens come back on ``tokens``
    (then None at the end, or an exception)."""

    adapter: str
    prompt: list[int]
    sampling: Sampling
    tokens: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)


class Batcher:
    def __init__(self, backend, *, max_batch: int = 8, wait_seconds: float = 0.01):
        self.backend, self.max_batch, self.wait_seconds = backend, max_batch, wait_seconds
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.batch_sizes: list[int] = []  # what each forward batch held, for tests and benchmarks
        self.cancelled = 0  # rows stopped early: their client went away, or a stop string ended them
        threading.Thread(target=self._serve, daemon=True, name="ftune-batcher").start()

    def submit(self, job: Job) -> Job:
        self.jobs.put(job)
        return job

    def _serve(self) -> None:
        while True:
            batch = [self.jobs.get()]
            deadline = time.monotonic() + self.wait_seconds
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self.jobs.get(timeout=max(remaining, 0)) if remaining > 0 else self.jobs.get_nowait())
                except queue.Empty:
                    break
            for group in self.groups(batch):
                try:
                    self._generate(group)
                except BaseException as error:  # every waiting request hears of it; the server goes on
                    for job in group:
                        job.tokens.put(error)

    def groups(self, batch: list[Job]) -> list[list[Job]]:
        """One group when every row's technique can mix; else one group per adapter, in order."""
        if all(self.backend.mixable(job.adapter) for job in batch):
            return [batch]
        by_adapter: dict[str, list[Job]] = {}
        for job in batch:
            by_adapter.setdefault(job.adapter, []).append(job)
        return list(by_adapter.values())

    def _generate(self, jobs: list[Job]) -> None:
        backend = self.backend
        names = {job.adapter for job in jobs}
        forward: dict[str, Any] = {}
        context = contextlib.nullcontext()
        if len(names) > 1:
            forward["adapter_names"] = [job.adapter if job.adapter in backend.adapters else BASE for job in jobs]
        with backend.lock:
            if not forward:
                context = backend.activate(jobs[0].adapter)
            with context:
                self.batch_sizes.append(len(jobs))
                self.cancelled += decode_together(backend.model, jobs, forward, backend.stop_ids, backend.pad_id)


def decode_together(model, jobs: Sequence[Job], forward: dict[str, Any], stop_ids: Sequence[int], pad_id: int) -> int:
    """Left-padded prompts, one KV cache, per-row positions, sampling and stopping. Returns how
    many rows were cancelled before they finished."""
    import torch

    rows, width = len(jobs), max(len(job.prompt) for job in jobs)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    for row, job in enumerate(jobs):
        ids[row, width - len(job.prompt):] = torch.tensor(job.prompt)
        mask[row, width - len(job.prompt):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    generators = [torch.Generator().manual_seed(job.sampling.seed) if job.sampling.seed is not None else None
                  for job in jobs]
    alive, produced, cancelled = [True] * rows, [0] * rows, 0
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **forward)
        following = positions[:, -1:] + 1
        while True:
            chosen = []
            for row, job in enumerate(jobs):
                if alive[row] and job.cancelled.is_set():
                    alive[row], cancelled = False, cancelled + 1
                    job.tokens.put(None)
                if not alive[row]:
                    chosen.append(pad_id)
                    continue
                token = next_token(out.logits[row, -1].float(), job.sampling, generators[row])
                produced[row] += 1
                job.tokens.put(token)
                if token in stop_ids or produced[row] >= job.sampling.max_tokens:
                    alive[row] = False
                    job.tokens.put(None)
                chosen.append(token)
            if not any(alive):
                return cancelled
            mask = torch.cat([mask, torch.ones((rows, 1), dtype=torch.long)], dim=1)
            out = model(input_ids=torch.tensor(chosen).unsqueeze(1), attention_mask=mask, position_ids=following,
                        past_key_values=out.past_key_values, use_cache=True, **forward)
            following = following + 1
