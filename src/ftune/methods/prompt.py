"""Prompt tuning: a few trained input embeddings before the text (Lester et al., 2021)."""

from __future__ import annotations

from ftune.methods.base import register_method
from ftune.methods.prompt_learning import PromptLearningMethod


@register_method("prompt")
class PromptTuning(PromptLearningMethod):
    """Soft prompt tuning via PEFT: trains ``virtual_tokens`` x hidden-size numbers, nothing else
    in the model. Needs a high learning rate; strongest on larger models."""

    default_learning_rates = {"classification": 1e-2, "causal_lm": 1e-2, "preference": 3e-3}

    def peft_config(self, task):
        from peft import PromptTuningConfig, PromptTuningInit

        return PromptTuningConfig(prompt_tuning_init=PromptTuningInit.RANDOM, **self.common_arguments(task))
