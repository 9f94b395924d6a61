"""What training computes with ftune's own kernels instead of the stock ones, in one block: the
trainer's training steps and the memory plan's probes (which must measure what training holds)
both run inside ``training_kernels``."""

from __future__ import annotations

from contextlib import contextmanager

from ftune.training.fast_dropout import fast_cpu_dropout
from ftune.training.fused_lora import fused_lora_layers
from ftune.training.short_attention import short_row_attention


@contextmanager
def training_kernels(model):
    """While the block runs: short rows' attention as plain matmuls on a CPU
    (``ftune.training.short_attention``), plain LoRA layers as one autograd step each
    (``ftune.training.fused_lora``) and dropout masks drawn 16 random bits an element on a CPU
    (``ftune.training.fast_dropout``)."""
    with short_row_attention(), fused_lora_layers(model), fast_cpu_dropout(model):
        yield
