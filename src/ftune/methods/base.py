"""The interface every adaptation technique implements, and the registry that holds them.

A technique is one small module: it declares its options (a dataclass), what it can do
(``Capabilities``), and how it makes a model trainable (``apply``) and reloadable (``save`` /
``load``). Importing a method module must stay cheap: torch and peft are imported inside
the functions that need them, so the CLI can validate a config in milliseconds.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import nn

    from ftune.models.task import TaskModel


@dataclass(frozen=True)
class Capabilities:
    """What a technique supports; checked against the config before any model loads."""

    mergeable: bool = False  # has added weights that fold into the base weights (run.merge)
    generation: bool = True  # works with causal-LM generation
    classification: bool = True  # works with a classification head
    quantized_base: bool = False  # trains on top of a quantized base model


@dataclass
class NoOptions:
    """This technique has no options."""


class Method:
    """Base class: subclasses set ``name``, ``Options``, ``capabilities`` and implement ``apply``."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    capabilities: ClassVar[Capabilities] = Capabilities()
    # Peak learning rate when train.learning_rate is empty, per task ("classification" trains a
    # new head and tolerates more; "causal_lm" nudges a model that already writes well;
    # "preference" (DPO) moves it least).
    default_learning_rates: ClassVar[dict[str, float]] = {"classification": 5e-5, "causal_lm": 2e-5, "preference": 5e-6}
    # True when save() writes only an adapter that needs the base model to load.
    saves_adapter: ClassVar[bool] = False
    # What trains, for techniques that add parameters: fragments of the added parameters'
    # names ("lora_", "hada_", ...). These, the PEFT copies of the head ("modules_to_save")
    # and nothing else train; after a merge none is left. Empty for techniques that train
    # the model's own weights (full, freeze, bitfit).
    added_parameter_markers: ClassVar[tuple[str, ...]] = ()

    def is_added_parameter(self, name: str) -> bool:
        return any(marker in name for marker in self.added_parameter_markers)

    def disabled(self, model: nn.Module):
        """A context in which ``model`` runs as its base model, this technique switched off:
        DPO's reference without a second copy of the model. Adapter techniques provide it."""
        raise NotImplementedError(f"method {self.name!r} trains the model's own weights: "
                                  "its reference is a separately loaded base model")

    def merge(self, model: nn.Module) -> nn.Module:
        """The model with the technique's added weights folded into the base weights, for
        ``run.merge=true``; only techniques whose ``capabilities.mergeable`` is true."""
        raise NotImplementedError(f"method {self.name!r} has no added weights to merge into the base")

    def serves_mixed_batches(self) -> bool:
        """True when the rows of one batch can each run a different adapter of this technique
        on one shared base (PEFT's ``adapter_names``), so a server batches requests for
        different runs together; otherwise it serves them in turn. Depends on the options
        (LoRA with DoRA cannot)."""
        return False

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.Options()

    def apply(self, model: nn.Module, task: TaskModel) -> nn.Module:
        """Make only this technique's parameters trainable; return the model to train."""
        raise NotImplementedError

    def model_load_options(self, device: str) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments for the base model (QLoRA: 4-bit quantization)."""
        return {}

    def check(self, task: TaskModel) -> list[str]:
        """Problems with these options for this model (e.g. more layers than it has)."""
        return []

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        """Problems with the option values alone, found before any model loads."""
        return []

    @classmethod
    def check_model_files(cls, model_name: str) -> list[str]:
        """Problems with this technique on ``model_name``, read from its files before any data or
        weights load (``check`` repeats them on the loaded model)."""
        return []

    def load(self, directory: Path, base_loader: Any, task: str = "classification") -> nn.Module:
        """Rebuild the trained model from ``directory``.

        Full-model techniques load the saved model; adapter techniques call ``base_loader()``
        for the base model and put the adapter on it.
        """
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
        return auto.from_pretrained(directory)

    def save(self, model: nn.Module, directory: Path) -> None:
        """Write what must be shipped (safetensors) into ``directory``."""
        model.save_pretrained(directory, safe_serialization=True)

    def saved_files(self, directory: Path) -> list[str]:
        """The files ``load`` reads from ``directory`` (one of each group of alternatives)."""
        directory = Path(directory)
        if (directory / "model.safetensors.index.json").is_file():  # a sharded save
            return ["model.safetensors.index.json"]
        return ["config.json", "model.safetensors"]

    def load_saved(self, directory: Path, base_loader: Any, task: str = "classification") -> nn.Module:
        """``load``, with a clear error naming the file when a saved file is missing or unreadable
        (deleted, truncated, corrupted) instead of a library's traceback."""
        from ftune.errors import FtuneError

        directory = Path(directory)
        missing = [name for name in self.saved_files(directory) if not (directory / name).is_file()]
        if missing:
            raise FtuneError(f"{directory / missing[0]}: missing; the run's saved model is incomplete "
                             "(restore the file, or train again)")
        try:
            return self.load(directory, base_loader, task)
        except Exception as error:
            if type(error).__name__ in UNREADABLE_WEIGHTS or "safetensors" in str(error).lower():
                files = ", ".join(self.saved_files(directory))
                raise FtuneError(f"{directory}: cannot read the saved weights ({files}): {type(error).__name__}: "
                                 f"{error}. The file is truncated or corrupted; restore it, or train again") from None
            raise



# what safetensors and the libraries reading it raise on a truncated or corrupted file
UNREADABLE_WEIGHTS = ("SafetensorError", "HeaderTooLarge", "MetadataIncompleteBuffer", "InvalidHeaderDeserialization")

_REGISTRY: dict[str, type[Method]] = {}
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")


def register_method(name: str):
    """Class decorator: add a technique to the registry under ``name``."""

    def decorate(cls: type[Method]) -> type[Method]:
        if not _NAME_PATTERN.match(name):
            raise ValueError(f"method name {name!r} must be lowercase letters, digits, - or _")
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].__module__}")
        if not dataclasses.is_dataclass(cls.Options):
            raise TypeError(f"{cls.__name__}.Options must be a dataclass")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def method_names() -> list[str]:
    _import_builtin_methods()
    return sorted(_REGISTRY)


def get_method_class(name: str) -> type[Method]:
    _import_builtin_methods()
    return _REGISTRY[name]


def build_method(name: str, options: dict[str, Any] | None = None) -> Method:
    cls = get_method_class(name)
    return cls(cls.Options(**(options or {})))


def _import_builtin_methods() -> None:
    from ftune.discovery import import_submodules

    import_submodules("ftune.methods")  # each module's @register_method adds its technique
