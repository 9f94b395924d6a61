"""A model prepared for one task, with the facts techniques need about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskModel:
    """A loaded model plus what techniques ask of it.

    ``head_modules`` are the modules whose weights were newly initialised for the task (the
    classifier, and BERT's pooler when the checkpoint lacks it): every technique trains them.
    """

    model: Any
    tokenizer: Any
    kind: str  # "encoder" or "decoder"
    head_modules: list[str] = field(default_factory=list)
    task: str = "classification"  # or "causal_lm"

    def is_head(self, parameter_name: str) -> bool:
        return any(parameter_name == m or parameter_name.startswith(m + ".") for m in self.head_modules)

    def blocks(self) -> list[tuple[str, Any]]:
        """The transformer blocks in order, as (qualified name, module): the longest ModuleList."""
        from torch import nn

        best: tuple[str, Any] | None = None
        for name, module in self.model.named_modules():
            if isinstance(module, nn.ModuleList) and (best is None or len(module) > len(best[1])):
                best = (name, module)
        if best is None:
            return []
        return [(f"{best[0]}.{i}", block) for i, block in enumerate(best[1])]

    def linear_layer_names(self, within: str = "blocks") -> list[str]:
        """Qualified names of nn.Linear layers inside the transformer blocks (never the head)."""
        from torch import nn

        prefixes = tuple(name + "." for name, _ in self.blocks())
        return [
            name
            for name, module in self.model.named_modules()
            if isinstance(module, nn.Linear) and name.startswith(prefixes) and not self.is_head(name)
        ]
