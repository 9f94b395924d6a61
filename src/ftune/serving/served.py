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
    methods: dict[str, Any] = field(default_factory=dict)  # adapter name -> its technique (ftune Method)
    max_batch: int = 8
    _batcher: Any = None

    @property
    def stop_ids(self) -> list[int]:
        from ftune.data.encode import stop_token_ids

        return stop_token_ids(self.tokenizer)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]

    @property
    def batcher(self):
        """Created on first use (its thread decodes every generation request of this base)."""
        if self._batcher is None:
            from ftune.serving.batcher import Batcher

            self._batcher = Batcher(self, max_batch=self.max_batch)
        return self._batcher

    def largest_batch(self) -> int:
        """The most rows decoded together so far (0 before the first request)."""
        return max(self._batcher.batch_sizes, default=0) if self._batcher is not None else 0

    def cancelled_rows(self) -> int:
        """Rows whose generation stopped early (a client gone, a stop string)."""
        return self._batcher.cancelled if self._batcher is not None else 0

    def mixable(self, name: str) -> bool:
        """Whether a request for ``name`` may share a batch with other adapters' rows: every
        adapter on this base can mix (PEFT ``adapter_names``), and so can the bare base."""
        if not self.adapters:
            return True  # one model, nothing to mix
        return all(self.methods[a].serves_mixed_batches() for a in self.adapters)

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
    scorer: Any = None  # classifier and embeddings: a Coalescer that batches concurrent requests

    def __post_init__(self):
        from ftune.serving.coalesce import Coalescer

        if self.kind == "classifier":
            self.scorer = Coalescer(lambda texts: classify_rows(self.backend, texts))
        elif self.kind == "embeddings":
            self.scorer = Coalescer(self.backend.embed)

    def largest_batch(self) -> int:
        """The most requests run together so far."""
        return self.scorer.largest_batch() if self.scorer is not None else self.backend.largest_batch()


class ServedModels:
    def __init__(self, max_batch: int = 8):
        self.models: dict[str, ServedModel] = {}
        self._bases: dict[tuple, ChatBackend] = {}
        self.max_batch = max_batch  # rows decoded together per base; 1 turns batching off

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

    def remove(self, name: str) -> None:
        """Stop serving ``name``; an adapter is deleted from its base (the base stays loaded)."""
        served = self.models.pop(name)
        backend = served.backend
        if served.kind == "chat" and name in getattr(backend, "adapters", ()):
            with backend.lock:
                backend.adapters.discard(name)
                backend.methods.pop(name, None)
                if backend.adapters:
                    backend.model.set_adapter(sorted(backend.adapters)[0])
                backend.model.delete_adapter(name)

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

            if name in self.models:
                raise FtuneError(f"a served model is already named {name!r}")
            with backend.lock:  # not while the batcher decodes with this model
                if isinstance(backend.model, PeftModel):
                    backend.model.load_adapter(str(path / MODEL_DIR), adapter_name=name)
                else:
                    backend.model = PeftModel.from_pretrained(backend.model, str(path / MODEL_DIR), adapter_name=name)
                backend.model.eval()
            template = _template(info.get("template", "auto"), backend.tokenizer)
            backend.adapters.add(name)
            backend.methods[name] = method
            return ServedModel(name, "chat", info["base_model"], backend, template, str(path))
        from ftune.eval.generator import load_generator

        generator = load_generator(str(path))
        backend = ChatBackend(generator.model, generator.tokenizer, _context(generator.model),
                              max_batch=self.max_batch)
        return ServedModel(name, "chat", info["base_model"], backend, generator.template, str(path))

    def _shared_base(self, base: str, method) -> ChatBackend:
        """One loaded copy per base model and loading (QLoRA's 4-bit base is its own copy), shared
        by the base served by name and every adapter run on it."""
        from ftune.models.load import load_causal_lm, resolve_model_dir

        options = method.model_load_options("cpu") if method is not None else {}
        key = (str(resolve_model_dir(base).resolve()), json.dumps(options, sort_keys=True, default=str))
        if key not in self._bases:
            task = load_causal_lm(base, **options)
            task.model.eval()
            self._bases[key] = ChatBackend(task.model, task.tokenizer, _context(task.model),
                                           max_batch=self.max_batch)
        return self._bases[key]

    def _add_model(self, source: str, name: str) -> ServedModel:
        from ftune.models.load import model_kind, resolve_model_dir

        directory = resolve_model_dir(source)
        if model_kind(directory) == "encoder":
            config_path = directory / "config.json"
            config = json.loads(config_path.read_text()) if config_path.is_file() else {}
            if any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
                return ServedModel(name, "classifier", source, _plain_classifier(directory), source=source)
            from ftune.serving.embeddings import EmbeddingBackend

            return ServedModel(name, "embeddings", source, EmbeddingBackend.load(directory), source=source)
        backend = self._shared_base(source, None)  # runs on this base reuse this copy, and it theirs
        return ServedModel(name, "chat", source, backend, _template("auto", backend.tokenizer), source)


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


def classify_rows(classifier, texts: list[str]) -> list[dict[str, Any]]:
    """Label and probabilities of each text."""
    from ftune.eval.classifier import predict_probabilities

    rows = predict_probabilities(classifier.model, classifier.tokenizer, texts, classifier.max_length)
    out = []
    for row in rows:
        probabilities = {label: float(p) for label, p in zip(classifier.label_names, row)}
        out.append({"label": max(probabilities, key=probabilities.get), "probabilities": probabilities})
    return out
