"""rsLoRA: LoRA scaled by alpha / sqrt(r) instead of alpha / r (Kalajdzievski, 2023)."""

from __future__ import annotations

from dataclasses import dataclass

from ftune.config.schema import setting
from ftune.methods.base import register_method
from ftune.methods.lora import Lora, LoraOptions


@dataclass
class RsLoraOptions(LoraOptions):
    use_rslora: bool = setting(True, "rsLoRA scaling alpha / sqrt(r) (always on for rslora)")


@register_method("rslora")
class RsLora(Lora):
    """Rank-stabilized LoRA via PEFT (``use_rslora``): higher ranks keep learning instead of
    their updates shrinking as 1/r. Mergeable; ships as a small adapter."""

    Options = RsLoraOptions
