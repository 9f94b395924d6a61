"""One model trained by several processes (DDP through accelerate or torchrun): which process
this is, what only the main one does, which rows each trains on, and the clock they share.

ftune adds no engine of its own: torch's DistributedDataParallel under transformers' Trainer
and accelerate does the work (gloo on CPU, NCCL on CUDA). What is here makes a run over N
processes train like one process with N times the batch:

- every optimizer step takes the rows the single-process run would take (the same
  length-grouped order, drawn with the global batch), split among the processes, with no row
  repeated or dropped; a process left without a row in the last, short step of an epoch gets a
  filler row whose label is masked, which adds nothing to the loss
  (``ftune.training.sampling.ShardedLengthBatches``);
- losses are sums over the trained rows or tokens of the whole step, across processes,
  divided by their number (``ftune.training.trainer``), so unequal shares stay exact;
- the time budget and the learning-rate schedule read one clock, the slowest process's, so
  every process stops at the same step with the same learning rate
  (``ftune.training.callbacks.AgreedClock``), and saves a checkpoint at the same step;
- a checkpoint takes every process (each its RNG state; ``ftune.training.checkpoints``), and
  ``ftune train --resume`` starts as many again, each skipping its share of the trained batches.

This module imports nothing heavy: the command line asks it which process it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """This process's place among the processes torchrun / accelerate launched (one when none)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                 size=size, local_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))


def main_process_echo(echo):
    """``echo`` on the main process; silence on the others (one copy of every line)."""
    return echo if current_world().main else _silent


def _silent(*_args, **_kwargs) -> None:
    pass
