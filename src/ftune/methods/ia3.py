"""IA3: learned per-channel rescaling of keys, values and the feed-forward output (Liu et al., 2022)."""

from __future__ import annotations

import re
from ftune.methods.base import Capabilities, register_method
from ftune.methods.peft_method import PeftMethod, peft_task_type

# Attention keys / values and the feed-forward layer that projects back to the hidden size,
# by the names the common architectures use (Llama/Mistral/Qwen, BERT/MiniLM, GPT-2, OPT).
KEY_VALUE = re.compile(r"\.(k_proj|v_proj|key|value|c_attn|query_key_value)$")
FEED_FORWARD = re.compile(r"(\.down_proj|\.fc2|\.mlp\.c_proj|layers?\.\d+\.output\.dense|\.dense_4h_to_h)$")


@register_method("ia3")
class IA3(PeftMethod):
    """Infused Adapter by Inhibiting and Amplifying Inner Activations, via PEFT: one learned
    vector per adapted layer, the fewest trainable parameters of any technique here.
    Mergeable; ships as a tiny adapter."""

    capabilities = Capabilities(mergeable=True, generation=True, classification=True)
    added_parameter_markers = ("ia3_",)
    default_learning_rates = {"classification": 5e-3, "causal_lm": 3e-3, "preference": 1e-3}
    def layers(self, task) -> tuple[list[str], list[str]]:
        linear = task.linear_layer_names()
        key_value = [n for n in linear if KEY_VALUE.search(n)]
        feed_forward = [n for n in linear if FEED_FORWARD.search(n)]
        return key_value, feed_forward

    def check(self, task):
        key_value, feed_forward = self.layers(task)
        if not key_value or not feed_forward:
            return ["method.name = 'ia3': cannot find this model's attention key/value and feed-forward "
                    "output layers (known names: k_proj/v_proj/down_proj, key/value/output.dense); use lora"]
        return []

    def peft_config(self, task):
        from peft import IA3Config

        key_value, feed_forward = self.layers(task)
        return IA3Config(
            task_type=peft_task_type(task),
            target_modules=key_value + feed_forward,
            feedforward_modules=feed_forward,
            modules_to_save=list(task.head_modules),
        )
