"""The modules bottleneck adapters add to a model. Imports torch: import this module lazily."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

ACTIVATION_LAYERS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class Bottleneck(nn.Module):
    """``x + up(act(down(x)))``. ``up`` starts at zero, so a new adapter is exactly the identity,
    and ``down`` is random so that ``up`` learns from the first step.

    ``down`` starts "looks-linear" (Balduzzi et al., 2017): its rows come in pairs ``w, -w`` and
    its bias is zero, so on every token half the units are active. With independent random rows a
    small bottleneck can start dead: fresh sub-layer outputs are tiny (~0.01), the tokens that
    matter can be few (BERT's last block feeds only [CLS] to the head), and a unit that ReLU
    zeroes on all of them never gets a gradient, nor does its part of ``up``."""

    def __init__(self, width: int, size: int, activation: str = "relu", device=None, dtype=None):
        super().__init__()
        self.down = nn.Linear(width, size, device=device, dtype=dtype)
        self.act = ACTIVATION_LAYERS[activation]()
        self.up = nn.Linear(size, width, device=device, dtype=dtype)
        half = size // 2
        with torch.no_grad():
            self.down.weight[half:2 * half] = -self.down.weight[:half]
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return x + self.up(self.act(self.down(x)))


class AdaptedLinear(nn.Module):
    """A (frozen) linear layer ending a sub-layer, followed by a trainable bottleneck adapter."""

    def __init__(self, base: nn.Linear, size: int, activation: str):
        super().__init__()
        self.base = base
        self.adapter = Bottleneck(base.out_features, size, activation,
                                  device=base.weight.device, dtype=base.weight.dtype)
        self.enabled = True  # False: behave exactly as the base layer (DPO's reference model)

    # Model code sometimes reads a layer's weight, e.g. for its dtype; answer as the base layer.
    @property
    def weight(self):
        return self.base.weight

    @property
    def bias(self):
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x):
        y = self.base(x)
        return self.adapter(y) if self.enabled else y


def insert_adapters(model: nn.Module, layer_names: list[str], reduction_factor: int,
                    activation: str) -> list[AdaptedLinear]:
    """Replace each named nn.Linear of ``model`` by an AdaptedLinear around it (in place)."""
    inserted = []
    for name in layer_names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
        wrapped = AdaptedLinear(base, max(1, base.out_features // reduction_factor), activation)
        setattr(parent, child, wrapped)
        inserted.append(wrapped)
    return inserted


def adapted_layers(model: nn.Module) -> list[tuple[str, AdaptedLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AdaptedLinear)]


@contextmanager
def adapters_disabled(model: nn.Module):
    """Run ``model`` as its base model (PEFT's ``disable_adapter``, which ftune's DPO reference
    scoring calls): every adapter is bypassed inside the ``with`` block."""
    layers = [m for _, m in adapted_layers(model)]
    states = [m.enabled for m in layers]
    for layer in layers:
        layer.enabled = False
    try:
        yield model
    finally:
        for layer, state in zip(layers, states):
            layer.enabled = state
