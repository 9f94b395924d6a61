"""Batch collators for causal-LM fine-tuning: dynamic padding, or padding-free packing.

Both take the ``input_ids`` / ``labels`` lists made by ``ftune.data.masking`` and never look
at token values to decide what is padding: SmolLM2's pad id equals its EOS id, so a mask built
from ``input_ids == pad_id`` would hide every EOS and the model would never learn to stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ftune.data.masking import IGNORE_INDEX

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


def _lists(feature: dict[str, Any]) -> tuple[list[int], list[int]]:
    input_ids, labels = feature["input_ids"], feature["labels"]
    input_ids = input_ids.tolist() if hasattr(input_ids, "tolist") else list(input_ids)
    labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    if len(input_ids) != len(labels):
        raise ValueError(f"input_ids ({len(input_ids)}) and labels ({len(labels)}) differ in length")
    return input_ids, labels


@dataclass
class PaddedCausalCollator:
    """Right-pad a batch to its longest example (optionally to a multiple of ``pad_to_multiple_of``).

    Returns ``input_ids`` (padded with ``pad_token_id``), ``labels`` (padded with -100) and
    ``attention_mask`` (1 for each example's real tokens, from its length) as int64 tensors.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase,
                       pad_to_multiple_of: int | None = None) -> PaddedCausalCollator:
        """Use the tokenizer's pad id, else its EOS id (the value is masked out either way)."""
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return cls(pad_id if pad_id is not None else 0, pad_to_multiple_of)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        if not features:
            raise ValueError("cannot collate an empty batch")
        rows = [_lists(feature) for feature in features]
        width = max(len(ids) for ids, _ in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (ids, row_labels) in enumerate(rows):
            n = len(ids)
            input_ids[row, :n] = torch.tensor(ids, dtype=torch.long)
            labels[row, :n] = torch.tensor(row_labels, dtype=torch.long)
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


@dataclass
class PaddingFreeCollator:
    """Concatenate the batch into one row (batch size 1) with ``position_ids`` restarting at 0.

    The first label of every sequence is -100, so no token predicts across a boundary; there
    is no ``attention_mask``: transformers finds the sequences from the position ids. This is
    transformers' ``DataCollatorWithFlattening``, which does exactly that, wrapped.

    Caveat (transformers 5.24): the packed sequences are kept apart only when the model runs
    without a KV cache (``use_cache=False``). With a cache (LlamaConfig's default
    ``use_cache=True`` outside the Trainer) the packed-sequence detection is skipped and later
    sequences attend to earlier ones. The Trainer sets ``model.config.use_cache =
    TrainingArguments.use_cache``, which defaults to False. Works with eager and sdpa attention.
    """

    _inner: Any = field(default=None, init=False, repr=False)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self._inner is None:
            from transformers import DataCollatorWithFlattening

            self._inner = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
        for feature in features:
            _lists(feature)  # same checks as the padded collator
        return self._inner(features)
