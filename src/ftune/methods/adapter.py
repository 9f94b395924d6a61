"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2020) for encoders and decoders.

A small ``down -> activation -> up`` network with a residual connection follows the output
projection of chosen sub-layers in every transformer block; only the adapters and the task head
train. ``pfeiffer`` puts one adapter after each feed-forward sub-layer, ``houlsby`` also one after
each attention sub-layer. The up-projection starts at zero, so training starts from the base
model exactly. The layers themselves live in ``ftune.models.adapter_layers`` (which imports torch).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ftune.config.schema import setting
from ftune.errors import FtuneError
from ftune.methods.base import Capabilities, Method, register_method

PLACEMENTS = ("houlsby", "pfeiffer")
ACTIVATIONS = ("relu", "gelu", "silu")
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
RECORD = "ftune_adapter"  # model attribute: what save() must write (targets, heads, options)

# The linear layer that ends a sub-layer, by the end of its name inside a block. Attention:
# BERT attention.output.dense, Llama self_attn.o_proj, BART out_proj, GPT-NeoX attention.dense,
# DistilBERT attention.out_lin. Feed-forward: BERT output.dense, Llama mlp.down_proj, OPT fc2,
# DistilBERT ffn.lin2, Falcon mlp.dense_4h_to_h.
ATTENTION_OUTPUTS = ("o_proj", "out_proj", "dense", "c_proj", "out_lin")
FEED_FORWARD_OUTPUTS = ("down_proj", "output.dense", "fc2", "c_proj", "lin2", "dense_4h_to_h")


@dataclass
class AdapterOptions:
    reduction_factor: int = setting(16, "bottleneck size = hidden size // reduction_factor (at least 1)")
    placement: str = setting("pfeiffer", "pfeiffer: an adapter after each feed-forward sub-layer; "
                                         "houlsby: after each attention and each feed-forward sub-layer")
    activation: str = setting("relu", "activation inside the bottleneck: relu, gelu or silu")


def sublayer_output(relative_name: str) -> str | None:
    """"attention" or "feed_forward" when a block's linear layer ends that sub-layer, else None."""
    *path, _ = relative_name.split(".")
    in_attention = any("attn" in part or "attention" in part for part in path)
    ends = ATTENTION_OUTPUTS if in_attention else FEED_FORWARD_OUTPUTS
    if any(relative_name == end or relative_name.endswith("." + end) for end in ends):
        return "attention" if in_attention else "feed_forward"
    return None


def adapter_targets(model, placement: str) -> tuple[list[str], list[str]]:
    """(qualified names of the linear layers an adapter follows, problems), from the model alone."""
    from torch import nn

    from ftune.models.task import TaskModel

    if getattr(model, RECORD, None) is not None:
        return [], ["method.name = 'adapter': this model already has adapters; apply the method once"]
    blocks = TaskModel(model=model, tokenizer=None, kind="").blocks()
    if not blocks:
        return [], ["method.name = 'adapter': this model has no list of transformer blocks to put adapters in"]
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    wanted = ("attention", "feed_forward") if placement == "houlsby" else ("feed_forward",)
    targets: list[str] = []
    missing: dict[str, list[tuple[str, list[str]]]] = {kind: [] for kind in wanted}
    for block_name, block in blocks:
        linear = [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Linear)]
        found = {kind: 0 for kind in wanted}
        for relative, layer in linear:
            kind = sublayer_output(relative)
            if kind in found and (hidden is None or layer.out_features == hidden):
                targets.append(f"{block_name}.{relative}")
                found[kind] += 1
        for kind in wanted:
            if not found[kind]:
                missing[kind].append((block_name, [n for n, _ in linear]))
    problems = []
    for kind, blocks_without in missing.items():
        if blocks_without:
            first, names = blocks_without[0]
            examples = ATTENTION_OUTPUTS if kind == "attention" else FEED_FORWARD_OUTPUTS
            problems.append(
                f"method.placement = {placement!r}: no {kind.replace('_', '-')} output layer in "
                f"{len(blocks_without)} of {len(blocks)} blocks (a linear layer named like {', '.join(examples)}); "
                f"{first} has {', '.join(names) or 'no linear layers'}")
    return targets, problems


@register_method("adapter")
class Adapter(Method):
    """Bottleneck adapters after sub-layer outputs (+ the task head). Ships as a small safetensors file."""

    Options = AdapterOptions
    capabilities = Capabilities(mergeable=False, generation=True, classification=True)
    default_learning_rates = {"classification": 1e-3, "causal_lm": 5e-4, "preference": 1e-4}
    saves_adapter = True
    added_parameter_markers = (".adapter.",)

    @classmethod
    def check_options(cls, options):
        values = {**dataclasses.asdict(AdapterOptions()), **options}
        problems = []
        factor = values["reduction_factor"]
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            problems.append(f"method.reduction_factor = {factor!r}: must be a whole number, at least 1")
        if values["placement"] not in PLACEMENTS:
            problems.append(f"method.placement = {values['placement']!r}: use houlsby or pfeiffer")
        if values["activation"] not in ACTIVATIONS:
            problems.append(f"method.activation = {values['activation']!r}: use relu, gelu or silu")
        return problems

    def check(self, task):
        problems = self.check_options(dataclasses.asdict(self.options))
        if problems:
            return problems
        return adapter_targets(task.model, self.options.placement)[1]

    def apply(self, model, task):
        problems = self.check_options(dataclasses.asdict(self.options))
        if problems:
            raise FtuneError("\n".join(problems))
        targets, problems = adapter_targets(model, self.options.placement)
        if problems:
            raise FtuneError("\n".join(problems))
        for name, parameter in model.named_parameters():
            parameter.requires_grad = task.is_head(name)
        for layer in _insert(model, targets, self.options, list(task.head_modules)):
            layer.adapter.requires_grad_(True)
        return model

    def disabled(self, model):
        from ftune.models.adapter_layers import adapters_disabled

        return adapters_disabled(model)

    def save(self, model, directory: Path) -> None:
        from safetensors.torch import save_file

        record = getattr(model, RECORD, None)
        if record is None:
            raise FtuneError("method 'adapter': this model has no adapters to save (apply the method first)")
        prefixes = _saved_prefixes(record)
        tensors = {k: v.detach().cpu().contiguous().clone()  # clone: a head may share storage
                   for k, v in model.state_dict().items() if k.startswith(prefixes)}
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(tensors, directory / WEIGHTS_FILE, metadata={"format": "pt"})
        (directory / CONFIG_FILE).write_text(json.dumps({"method": "adapter", **record}, indent=2) + "\n")

    def saved_files(self, directory: Path) -> list[str]:
        return [CONFIG_FILE, WEIGHTS_FILE]

    def load(self, directory: Path, base_loader, task: str = "classification"):
        from safetensors.torch import load_file

        directory = Path(directory)
        record = json.loads((directory / CONFIG_FILE).read_text())
        options = AdapterOptions(**record["options"])
        model = base_loader()
        targets, problems = adapter_targets(model, options.placement)
        if problems:
            raise FtuneError("\n".join(f"{directory / CONFIG_FILE}: {p}" for p in problems))
        if targets != record["targets"]:
            raise FtuneError(f"{directory / CONFIG_FILE}: the adapters follow {len(record['targets'])} layers "
                             f"({record['targets'][:2]}, ...) but this base model offers {len(targets)} "
                             f"({targets[:2]}, ...); load them on the base model they were trained on")
        _insert(model, targets, options, record["head_modules"])
        saved = load_file(directory / WEIGHTS_FILE)
        prefixes = _saved_prefixes(record)
        unplaced = sorted(set(saved) - set(model.state_dict()))
        unfilled = sorted(k for k in model.state_dict() if k.startswith(prefixes) and k not in saved)
        if unplaced or unfilled:
            raise FtuneError(f"{directory / WEIGHTS_FILE} does not fit the base model: "
                             f"{len(unplaced)} saved tensors have no place in it (e.g. {unplaced[:3]}), "
                             f"{len(unfilled)} adapter or head tensors are missing (e.g. {unfilled[:3]})")
        model.load_state_dict(saved, strict=False)
        model.requires_grad_(False)
        return model


def _insert(model, targets: list[str], options: AdapterOptions, head_modules: list[str]) -> list:
    """Put the adapters in (returned), and record on the model what save() needs."""
    from ftune.models.adapter_layers import insert_adapters

    layers = insert_adapters(model, targets, options.reduction_factor, options.activation)
    setattr(model, RECORD, {"options": dataclasses.asdict(options), "targets": list(targets),
                            "head_modules": list(head_modules)})
    return layers


def _saved_prefixes(record) -> tuple[str, ...]:
    return tuple(f"{t}.adapter." for t in record["targets"]) + tuple(f"{h}." for h in record["head_modules"])
