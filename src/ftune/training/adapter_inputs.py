"""Adapter inputs left in the autocast dtype while training under mixed precision.

PEFT casts each LoRA-family layer's input to the dtype of the adapter's weights (fp32, the
master weights) before the adapter's matmuls; under bf16 autocast those matmuls cast it
straight back to bf16. That is a full copy of every adapted layer's input and its gradient,
forward and backward, for nothing: autocast computes the adapter in bf16 either way. With
the cast off, the adapter sees the bf16 input autocast would have given it, and computes the
same numbers. Only where no dropout sits on the adapter's input (see ``_no_input_dropout``).
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def adapter_inputs_uncast(model, autocast: bool):
    """While the block runs under ``autocast``, PEFT layers of ``model`` skip the input cast
    (no-op for a model without PEFT layers, or without autocast: there the cast is needed,
    e.g. a bf16 or 4-bit base's output meeting fp32 adapter weights)."""
    # peft.helpers.disable_input_dtype_casting does this for every tuner layer, and fails on
    # the layers that have no such switch (IA3's); these are the layers that cast
    layers = [m for m in model.modules()
              if getattr(m, "cast_input_dtype_enabled", None) is True and _no_input_dropout(m)] if autocast else []
    for layer in layers:
        layer.cast_input_dtype_enabled = False
    try:
        yield
    finally:
        for layer in layers:
            layer.cast_input_dtype_enabled = True


def _no_input_dropout(layer) -> bool:
    """True where the adapter's input goes straight to its matmul (LoRA dropout 0, or a
    technique without input dropout): there bf16 -> fp32 -> bf16 is exact and the result is
    unchanged. Dropout on the fp32 copy draws other masks than on bf16, and its 1 / (1 - p)
    rounds in bf16: a different run, so those layers keep PEFT's cast."""
    from torch import nn

    return all(isinstance(dropout, nn.Identity) for dropout in getattr(layer, "lora_dropout", {}).values())
