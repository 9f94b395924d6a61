"""LoRA through PEFT: low-rank updates on chosen linear layers; the head trains in full."""

from __future__ import annotations

from dataclasses import dataclass

from ftune.config.schema import setting
from ftune.methods.base import Capabilities, register_method
from ftune.methods.peft_method import PeftMethod, peft_task_type

PRESETS = ("attention", "all-linear")


@dataclass
class LoraOptions:
    r: int = setting(16, "rank of the low-rank update")
    alpha: float = setting(32.0, "scaling numerator: updates are scaled by alpha / r")
    dropout: float = setting(0.05, "dropout on the LoRA input")
    target_modules: str | list[str] = setting(
        "attention", "preset (attention, all-linear) or a list of layer-name suffixes such as [q_proj, v_proj]"
    )
    use_dora: bool = setting(False, "DoRA: split each update into magnitude and direction (Liu et al., 2024)")
    use_rslora: bool = setting(False, "rsLoRA: scale updates by alpha / sqrt(r), stable at high ranks (Kalajdzievski, 2023)")


@register_method("lora")
class Lora(PeftMethod):
    """Low-Rank Adaptation (Hu et al., 2021), via PEFT. Ships as a small safetensors adapter."""

    Options = LoraOptions
    added_parameter_markers = ("lora_",)
    capabilities = Capabilities(mergeable=True, generation=True, classification=True)
    default_learning_rates = {"classification": 1e-3, "causal_lm": 2e-4, "preference": 5e-5}

    def serves_mixed_batches(self) -> bool:
        return not self.options.use_dora  # PEFT refuses adapter_names with DoRA

    @classmethod
    def check_options(cls, options):
        problems = []
        if options["r"] < 1:
            problems.append(f"method.r = {options['r']}: must be at least 1")
        if options["alpha"] <= 0:
            problems.append(f"method.alpha = {options['alpha']}: must be above 0")
        if not 0 <= options["dropout"] < 1:
            problems.append(f"method.dropout = {options['dropout']}: must be between 0 and 1")
        targets = options["target_modules"]
        if isinstance(targets, str) and targets not in PRESETS:
            problems.append(f"method.target_modules = {targets!r}: use a preset ({', '.join(PRESETS)}) "
                            "or a list of layer names, e.g. [q_proj, v_proj]")
        return problems

    def target_layers(self, task) -> list[str]:
        linear = task.linear_layer_names()
        targets = self.options.target_modules
        if targets == "all-linear":
            return linear
        if targets == "attention":
            return [n for n in linear if "attn" in n or "attention" in n]
        return [n for n in linear if any(n == t or n.endswith("." + t) for t in targets)]

    def check(self, task):
        if not self.target_layers(task):
            return [f"method.target_modules = {self.options.target_modules!r}: matches no linear layer of "
                    f"this model; e.g. {', '.join(sorted({n.rsplit('.', 1)[-1] for n in task.linear_layer_names()}))}"]
        return []

    def peft_config(self, task):
        from peft import LoraConfig

        return LoraConfig(
            task_type=peft_task_type(task),
            r=self.options.r,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            target_modules=self.target_layers(task),
            modules_to_save=list(task.head_modules),
            use_dora=self.options.use_dora,
            use_rslora=self.options.use_rslora,
        )
