"""The order and the shares of training rows: each epoch's length-grouped order drawn from the
seed and the epoch (so a resumed run sees the batches it would have seen), and, over several
processes, each process's batches of it (``ShardedLengthBatches``)."""

from __future__ import annotations

from typing import Any

from transformers.trainer_pt_utils import BatchRebalanceSampler, LengthGroupedSampler

from ftune.training.distributed import World

IGNORED_LABEL = -100


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order, drawn from ``seed + epoch`` rather than from the
    global random state (which a resumed process reaches by another path)."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        import torch

        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class WithFillers:
    """A training dataset whose indices past its end are filler rows: row ``i - len`` with every
    label masked (a preference pair: with no completion, which is what DPO trains on).
    ``ShardedLengthBatches`` hands one to a process that has no row in a step."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):  # the real rows only (``for row in dataset`` would run on into the fillers)
        return (self.dataset[i] for i in range(len(self.dataset)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        size = len(self.dataset)
        if not 0 <= index < 2 * size:
            raise IndexError(index)
        if index < size:
            return self.dataset[index]
        item = dict(self.dataset[index - size])
        if "labels" not in item:  # a pair tokenized by TRL's DPOTrainer
            item["chosen_ids"], item["rejected_ids"] = [], []
            return item
        labels = item["labels"]
        item["labels"] = [IGNORED_LABEL] * len(labels) if isinstance(labels, (list, tuple)) else IGNORED_LABEL
        return item


class ShardedLengthBatches(BatchRebalanceSampler):
    """This process's batches: the single-process order (``LengthGroupedSampler`` drawn from
    seed + epoch with the global batch ``batch_size x accumulation x processes``), cut into one
    step's rows at a time; each step's rows are split into ``accumulation x processes``
    consecutive micro-batches, and process r takes micro-batches r, r + processes, ...

    A subclass of transformers' ``BatchRebalanceSampler`` only so that the Trainer treats it as
    the rank-aware batch sampler it is (accelerate does not shard it again)."""

    def __init__(self, dataset, batch_size: int, accumulation: int, world: World, seed: int):
        self.rows = len(dataset)
        # not ``batch_size``: accelerate would then "complete" a short batch with rows from the epoch's start
        self.rows_per_batch, self.accumulation, self.world = batch_size, accumulation, world
        self.global_batch = batch_size * accumulation * world.size
        # ``sampler``: accelerate's DataLoaderShard.set_epoch reaches it there
        self.sampler = EpochSeededLengthGroupedSampler(self.global_batch, dataset=dataset, lengths=length_column(dataset),
                                                       model_input_name="input_ids")
        self.sampler.seed, self.sampler.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def steps(self) -> int:
        return -(-self.rows // self.global_batch)

    def __len__(self) -> int:
        return self.steps() * self.accumulation

    def __iter__(self):
        order = list(self.sampler)
        for start in range(0, len(order), self.global_batch):
            pieces = step_pieces(order[start:start + self.global_batch], self.accumulation * self.world.size,
                                 self.rows_per_batch)
            for micro in range(self.accumulation):
                piece = pieces[micro * self.world.size + self.world.rank]
                yield piece or [self.rows + order[start]]  # a filler: the step's first row, label masked


def length_column(dataset) -> list[int] | None:
    """The lengths a single process groups by: a ``datasets.Dataset``'s "length" column where it
    has one (transformers reads it; DPO's pairs carry one), else None: those of ``input_ids``."""
    rows = dataset.dataset if isinstance(dataset, WithFillers) else dataset
    names = getattr(rows, "column_names", None)
    return list(rows["length"]) if names and "length" in names else None


def step_pieces(rows: list[int], count: int, batch_size: int) -> list[list[int]]:
    """``count`` consecutive pieces of one step's rows: of ``batch_size`` each when the step is
    full, otherwise as even as possible (a step with fewer rows than pieces leaves some empty)."""
    if len(rows) == count * batch_size:
        return [rows[i * batch_size:(i + 1) * batch_size] for i in range(count)]
    base, extra = divmod(len(rows), count)
    pieces, start = [], 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        pieces.append(rows[start:end])
        start = end
    return pieces
