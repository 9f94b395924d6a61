"""Prefix tuning: trained key/value prefixes in every attention layer (Li & Liang, 2021)."""

from __future__ import annotations

from ftune.methods.base import register_method
from ftune.methods.prompt_learning import PromptLearningMethod


@register_method("prefix")
class PrefixTuning(PromptLearningMethod):
    """Prefix tuning via PEFT: ``virtual_tokens`` trained keys and values per layer, passed to
    the model as a key/value cache. The input itself is unchanged."""

    default_learning_rates = {"classification": 5e-3, "causal_lm": 5e-3, "preference": 1e-3}

    def peft_config(self, task):
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(prefix_projection=False, **self.common_arguments(task))

    def apply(self, model, task):
        if task.task == "classification":
            accept_past_key_values(model)
        return super().apply(model, task)

    def load(self, directory, base_loader, task: str = "classification"):
        if task == "classification":
            return super().load(directory, lambda **options: accept_past_key_values(base_loader(**options)), task)
        return super().load(directory, base_loader, task)


def accept_past_key_values(model):
    """Let PEFT hand the prefix to a classifier as ``past_key_values``.

    transformers 5 renamed the argument to ``cache`` (the old name is still accepted through
    ``**kwargs``), and PEFT decides by looking for the old name in ``forward``'s signature.
    This gives the instance a forward with that name that passes everything through.
    """
    original = model.forward

    def forward(input_ids=None, attention_mask=None, inputs_embeds=None, labels=None,
                past_key_values=None, **kwargs):
        if past_key_values is not None:
            kwargs["cache"] = past_key_values
        return original(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                        labels=labels, **kwargs)

    model.forward = forward
    return model
