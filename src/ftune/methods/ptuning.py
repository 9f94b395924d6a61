"""P-tuning: virtual tokens produced by a small trained prompt encoder (Liu et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from ftune.config.schema import setting
from ftune.methods.base import register_method
from ftune.methods.prompt_learning import PromptLearningMethod, VirtualTokenOptions


@dataclass
class PTuningOptions(VirtualTokenOptions):
    encoder_hidden_size: int = setting(128, "hidden size of the MLP that produces the virtual tokens")


@register_method("ptuning")
class PTuning(PromptLearningMethod):
    """P-tuning via PEFT: an MLP reparameterizes the virtual tokens, which trains more stably
    than free embeddings. The encoder ships with the adapter (small)."""

    Options = PTuningOptions
    default_learning_rates = {"classification": 5e-3, "causal_lm": 5e-3, "preference": 1e-3}

    @classmethod
    def check_options(cls, options):
        problems = super().check_options(options)
        if options["encoder_hidden_size"] < 1:
            problems.append(f"method.encoder_hidden_size = {options['encoder_hidden_size']}: must be at least 1")
        return problems

    def peft_config(self, task):
        from peft import PromptEncoderConfig, PromptEncoderReparameterizationType

        return PromptEncoderConfig(encoder_reparameterization_type=PromptEncoderReparameterizationType.MLP,
                                   encoder_hidden_size=self.options.encoder_hidden_size,
                                   **self.common_arguments(task))
