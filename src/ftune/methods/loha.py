"""LoHa through PEFT: low-rank Hadamard-product updates (Hyeon-Woo et al., 2022, "FedPara").

Each update is the element-wise product of two low-rank matrices, so rank r reaches an
effective rank up to r² for twice LoRA's parameters. This module is the whole technique: the
registry finds it, and the method matrix and ``compare methods=all`` include it, with no
import line anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftune.config.schema import setting
from ftune.methods.base import Capabilities, register_method
from ftune.methods.lora import PRESETS, Lora
from ftune.methods.peft_method import peft_task_type


@dataclass
class LohaOptions:
    r: int = setting(8, "rank of each of the two factors of the Hadamard product")
    alpha: float = setting(16.0, "scaling numerator: updates are scaled by alpha / r")
    dropout: float = setting(0.0, "probability of dropping a whole adapted layer's update in a training step")
    target_modules: str | list[str] = setting(
        "attention", f"preset ({', '.join(PRESETS)}) or a list of layer-name suffixes such as [q_proj, v_proj]"
    )


@register_method("loha")
class Loha(Lora):
    """LoHa (LyCORIS family), via PEFT. Mergeable; ships as a small safetensors adapter."""

    Options = LohaOptions
    added_parameter_markers = ("hada_",)
    capabilities = Capabilities(mergeable=True, generation=True, classification=True)
    default_learning_rates = {"classification": 1e-3, "causal_lm": 2e-4, "preference": 5e-5}


    def serves_mixed_batches(self) -> bool:
        return False  # PEFT's LoHa layers have no per-row adapter choice

    def peft_config(self, task):
        from peft import LoHaConfig

        return LoHaConfig(
            task_type=peft_task_type(task),
            r=self.options.r,
            alpha=self.options.alpha,
            module_dropout=self.options.dropout,
            target_modules=self.target_layers(task),
            modules_to_save=list(task.head_modules),
        )
