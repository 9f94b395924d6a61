"""Layer freezing: train only the top transformer blocks and the task head."""

from __future__ import annotations

from dataclasses import dataclass

from ftune.config.schema import setting
from ftune.methods.base import Capabilities, Method, register_method


@dataclass
class FreezeOptions:
    layers: int = setting(2, "number of top transformer blocks that train (the rest stay frozen)")


@register_method("freeze")
class Freeze(Method):
    """Freeze the embeddings and lower blocks; train the top ``layers`` blocks, the final
    norm and the head (the classic "fine-tune the last layers" recipe)."""

    Options = FreezeOptions
    capabilities = Capabilities(mergeable=False, generation=True, classification=True)  # nothing added to merge
    default_learning_rates = {"classification": 1e-4, "causal_lm": 5e-5, "preference": 1e-5}

    @classmethod
    def check_options(cls, options):
        return [] if options["layers"] >= 0 else [f"method.layers = {options['layers']}: must be 0 or more"]

    def check(self, task):
        count = len(task.blocks())
        if self.options.layers > count:
            return [f"method.layers = {self.options.layers}: the model has only {count} transformer blocks"]
        return []

    def apply(self, model, task):
        blocks = task.blocks()
        trained_blocks = tuple(name + "." for name, _ in blocks[len(blocks) - self.options.layers:])
        all_blocks = tuple(name + "." for name, _ in blocks)
        for name, parameter in model.named_parameters():
            in_blocks = name.startswith(all_blocks)
            outside_after = not in_blocks and "embed" not in name  # final norm, pooler
            parameter.requires_grad = name.startswith(trained_blocks) or outside_after or task.is_head(name)
        return model
