"""Concurrent requests for one model, run as one call: the items of every request that arrives
within a short window are scored together (classification, embeddings)."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Sequence


class Coalescer:
    def __init__(self, score: Callable[[list[Any]], Sequence[Any]], *, wait_seconds: float = 0.01,
                 max_items: int = 256):
        self.score, self.wait_seconds, self.max_items = score, wait_seconds, max_items
        self.requests: queue.Queue = queue.Queue()
        self.batch_sizes: list[int] = []  # requests per call
        threading.Thread(target=self._serve, daemon=True, name="ftune-coalescer").start()

    def __call__(self, items: list[Any]) -> list[Any]:
        """This request's results, in order (blocks until its batch has run)."""
        slot = {"items": items, "done": threading.Event()}
        self.requests.put(slot)
        slot["done"].wait()
        if "error" in slot:
            raise slot["error"]
        return slot["results"]

    def largest_batch(self) -> int:
        return max(self.batch_sizes, default=0)

    def _serve(self) -> None:
        while True:
            slots = [self.requests.get()]
            count = len(slots[0]["items"])
            deadline = time.monotonic() + self.wait_seconds
            while count < self.max_items:
                try:
                    slot = self.requests.get(timeout=max(deadline - time.monotonic(), 0.0001))
                except queue.Empty:
                    break
                slots.append(slot)
                count += len(slot["items"])
            self.batch_sizes.append(len(slots))
            try:
                results = list(self.score([item for slot in slots for item in slot["items"]]))
                start = 0
                for slot in slots:
                    slot["results"] = results[start:start + len(slot["items"])]
                    start += len(slot["items"])
            except BaseException as error:  # every waiting request hears of it
                for slot in slots:
                    slot["error"] = error
            for slot in slots:
                slot["done"].set()
