"""What prompt tuning, prefix tuning and P-tuning share: trained virtual tokens, a frozen model."""

from __future__ import annotations

from dataclasses import dataclass

from ftune.config.schema import setting
from ftune.methods.base import Capabilities
from ftune.methods.peft_method import PeftMethod


@dataclass
class VirtualTokenOptions:
    virtual_tokens: int = setting(16, "number of trained virtual tokens put before every input")


class PromptLearningMethod(PeftMethod):
    """Virtual-token techniques via PEFT. The base model is untouched (nothing to merge);
    the head of a classifier trains in full."""

    Options = VirtualTokenOptions
    capabilities = Capabilities(mergeable=False, generation=True, classification=True)
    added_parameter_markers = ("prompt_encoder.",)

    @classmethod
    def check_options(cls, options):
        if not 1 <= options["virtual_tokens"] <= 512:
            return [f"method.virtual_tokens = {options['virtual_tokens']}: must be between 1 and 512"]
        return []

    def common_arguments(self, task) -> dict:
        from ftune.methods.peft_method import peft_task_type

        return {"task_type": peft_task_type(task), "num_virtual_tokens": self.options.virtual_tokens,
                "modules_to_save": list(task.head_modules) or None}
