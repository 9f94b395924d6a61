"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from ftune.methods.base import Capabilities, Method, register_method


@register_method("full")
class Full(Method):
    """Train every weight of the model. The reference point for all other techniques."""

    capabilities = Capabilities(mergeable=False, generation=True, classification=True)  # nothing added to merge
    default_learning_rates = {"classification": 5e-5, "causal_lm": 2e-5, "preference": 5e-6}

    def apply(self, model, task):
        for parameter in model.parameters():
            parameter.requires_grad = True
        return model
