"""What a server holds: each served name, its kind, and the backend that runs it. Runs that
share a base model (PEFT adapters with the same loading) share one copy of it."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftune.errors import FtuneError
from ftune.runs.run_dir import MODEL_DIR, MODEL_INFO


@dataclass
class ChatBackend:
    """A causal LM with zero or more named PEFT adapters; one request runs at a time."""

    model: Any
    tokenizer: Any
    context: int
    adapters: set[str] = field(default_factory=set)  # served names of the PEFT adapters on this base
    lock: threading.Lock = field(default_factory=threading.Lock)

    def activate(self, name: str):
        """A context in which the model runs as ``name``: its adapter, or the bare base. Hold
        ``lock`` around it: the active adapter is the model's state."""
        import contextlib

        if name in self.adapters:
            self.model.set_adapter(name)
            return contextlib.nullcontext()
        if hasattr(self.model, "disable_adapter"):
            return self.model.disable_adapter()
        return contextlib.nullcontext()


@dataclass
class ServedModel:
    name: str
    kind: str  # "chat" | "classifier" | "embeddings"
    parent: str  # the base model's name
    backend: Any
    template: Any = None  # chat: ftune.data.templates.Template
    source: str = ""


class ServedModels:
    def __init__(self):
        self.models: dict[str, ServedModel] = {}
        self._bases: dict[tuple, ChatBackend] = {}

    def names(self) -> list[str]:
        return list(self.models)

    def add(self, source: str, name: str | None = None, echo=print) -> ServedModel:
        path = Path(source)
        info_path = path / MODEL_DIR / MODEL_INFO
        if info_path.is_file():
            info = json.loads(info_path.read_text())
            served = self._add_run(path, info, name or path.name)
        else:
            served = self._add_model(source, name or path.name)
        if served.name in self.models:
            raise FtuneError(f"two served models are named {served.name!r}; give each run a distinct directory name")
        self.models[served.name] = served
        echo(f"ftune serve: {served.name} ({served.kind}, base {served.parent})")
        return served

    def _add_run(self, path: Path, info: dict[str, Any], name: str) -> ServedModel:
        from ftune.methods import build_method
        from ftune.methods.peft_method import PeftMethod

        if info["task"] == "classification":
            from ftune.eval.classifier import load_run_classifier

            return ServedModel(name, "classifier", info["base_model"], load_run_classifier(path), source=str(path))
        method = build_method(info["method"], info.get("method_options"))
        if isinstance(method, PeftMethod):
            backend = self._shared_base(info["base_model"], method)
            from peft import PeftModel

            if isinstance(backend.model, PeftModel):
                backend.model.load_adapter(str(path / MODEL_DIR), adapter_name=name)
            else:
                backend.model = PeftModel.from_pretrained(backend.model, str(path / MODEL_DIR), adapter_name=name)
            backend.model.eval()
            template = _template(info.get("template", "auto"), backend.tokenizer)
            backend.adapters.add(name)
            return ServedModel(name, "chat", info["base_model"], backend, template, str(path))
        from ftune.eval.generator import load_generator

        generator = load_generator(str(path))
        backend = ChatBackend(generator.model, generator.tokenizer, _context(generator.model))
        return ServedModel(name, "chat", info["base_model"], backend, generator.template, str(path))

    def _shared_base(self, base: str, method) -> ChatBackend:
        from ftune.models.load import load_causal_lm

        options = method.model_load_options("cpu")
        key = (base, json.dumps(options, sort_keys=True, default=str))
        if key not in self._bases:
            task = load_causal_lm(base, **options)
            task.model.eval()
            self._bases[key] = ChatBackend(task.model, task.tokenizer, _context(task.model))
        return self._bases[key]

    def _add_model(self, source: str, name: str) -> ServedModel:
        from ftune.models.load import model_kind, resolve_model_dir

        directory = resolve_model_dir(source)
        if model_kind(directory) == "encoder":
            config = json.loads((directory / "config.json").read_text()) if (directory / "config.json").is_file() else {}
            if any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
                return ServedModel(name, "classifier", source, _plain_classifier(directory), source=source)
            from ftune.serving.embeddings import EmbeddingBackend

            return ServedModel(name, "embeddings", source, EmbeddingBackend.load(directory), source=source)
        from ftune.models.load import load_causal_lm

        task = load_causal_lm(source)
        task.model.eval()
        backend = ChatBackend(task.model, task.tokenizer, _context(task.model))
        return ServedModel(name, "chat", source, backend, _template("auto", task.tokenizer), source)


def _template(name: str, tokenizer):
    from ftune.data.templates import resolve_template

    return resolve_template(name, tokenizer)


def _context(model) -> int:
    return int(min(getattr(model.config, "max_position_embeddings", 2048) or 2048, 8192))


def _plain_classifier(directory: Path):
    """A classifier exported with ``ftune export --to merged``: labels from its config."""
    from transformers import AutoModelForSequenceClassification

    from ftune.eval.classifier import LoadedClassifier
    from ftune.models.load import load_tokenizer

    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return LoadedClassifier(model, load_tokenizer(directory), labels, 512, {})
