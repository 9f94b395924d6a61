"""BitFit: train only the bias terms and the task head (Ben Zaken et al., 2021)."""

from __future__ import annotations

from ftune.methods.base import Capabilities, Method, register_method


@register_method("bitfit")
class BitFit(Method):
    """Train only bias terms (+ the task head). Tiny, ships as a whole model, surprisingly strong on encoders."""

    capabilities = Capabilities(mergeable=False, generation=True, classification=True)  # nothing added to merge
    default_learning_rates = {"classification": 1e-3, "causal_lm": 5e-4, "preference": 1e-4}

    @classmethod
    def check_model_files(cls, model_name):
        from ftune.models.registry import has_bias_terms

        if has_bias_terms(model_name) is False:
            return [f"method.name = 'bitfit': {model_name} has no bias terms outside the head (a Llama-style "
                    "model), so BitFit would train only the head; use lora or freeze"]
        return []

    def check(self, task):
        biases = [n for n, _ in task.model.named_parameters() if n.endswith(".bias") and not task.is_head(n)]
        if not biases:
            return ["method.name = 'bitfit': this model has no bias terms outside the head "
                    "(e.g. Llama-style models), so BitFit would train only the head; use lora or freeze"]
        return []

    def apply(self, model, task):
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.endswith(".bias") or task.is_head(name)
        return model
