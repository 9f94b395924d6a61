"""What every PEFT-backed technique shares: build a PEFT config, wrap the model, ship the adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftune.methods.base import Method


def peft_task_type(task) -> Any:
    from peft import TaskType

    return TaskType.CAUSAL_LM if task.task == "causal_lm" else TaskType.SEQ_CLS


class PeftMethod(Method):
    """Subclasses implement ``peft_config(task)``; the head modules train in full
    (``modules_to_save``) and ``save`` writes only the adapter, in safetensors."""

    saves_adapter = True

    def peft_config(self, task) -> Any:
        raise NotImplementedError

    def apply(self, model, task):
        from peft import get_peft_model

        return get_peft_model(model, self.peft_config(task))

    def save(self, model, directory: Path) -> None:
        model.save_pretrained(directory, safe_serialization=True)

    def saved_files(self, directory: Path) -> list[str]:
        return ["adapter_config.json", "adapter_model.safetensors"]

    def disabled(self, model):
        return model.disable_adapter()

    def merge(self, model):
        if not self.capabilities.mergeable:
            return super().merge(model)
        return model.merge_and_unload()

    def load(self, directory: Path, base_loader, task: str = "classification"):
        from peft import PeftModel

        return PeftModel.from_pretrained(base_loader(**self.model_load_options("cpu")), directory)
