"""Load built-in or local models for a task, offline. Heavy imports live here, not at startup."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from ftune.errors import FtuneError
from ftune.models.registry import BUILTIN_MODELS, BuiltinModel, cache_dir, model_problem, package_folder
from ftune.models.task import TaskModel

log = logging.getLogger(__name__)


def resolve_model_dir(name: str) -> Path:
    """A local Hugging Face model directory for ``name`` (converting a built-in GGUF once)."""
    problem = model_problem(name)
    if problem:
        raise FtuneError(f"model {name!r}: {problem}")
    if name not in BUILTIN_MODELS:
        return Path(name).expanduser()
    builtin = BUILTIN_MODELS[name]
    source = package_folder(builtin) / builtin.relative_path
    if not builtin.is_gguf:
        return source
    return _converted_gguf(builtin, source)


def _converted_gguf(builtin: BuiltinModel, gguf_path: Path) -> Path:
    target = cache_dir() / "models" / builtin.name
    # the file's name, size and package version, not its path: every venv (a fresh clone's, the
    # main one) shares the cache instead of converting it again, about 20 s each time
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version(builtin.pip_name)
    except PackageNotFoundError:
        package_version = ""
    stamp = {"source": gguf_path.name, "size": gguf_path.stat().st_size, "package": package_version}
    marker = target / "ftune-source.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"ftune: converting {gguf_path.name} to safetensors once (cached in {target}) ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # A GGUF-loaded model refuses save_pretrained until its quantization record is dropped;
    # the weights are already dequantized to fp32.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{builtin.name}-", dir=target.parent))
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    (staging / "ftune-source.json").write_text(json.dumps(stamp))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)  # atomic: a half-converted cache is never used
    return target


def model_kind(model_dir: Path) -> str:
    """"decoder" for causal LMs, "encoder" otherwise, from config.json alone."""
    config = json.loads((model_dir / "config.json").read_text())
    architectures = config.get("architectures") or []
    if any(a.endswith("ForCausalLM") for a in architectures) or config.get("is_decoder"):
        return "decoder"
    return "encoder"


def load_tokenizer(model_dir: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        # Decoders often lack a pad token. Classification reads the last non-pad position, so
        # the pad must not occur inside texts: EOS does not (texts are encoded without it).
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_classifier(name: str, label_names: list[str], trust_remote_code: bool = False, **load_options) -> TaskModel:
    """A sequence-classification model for ``label_names`` on top of ``name``. ``load_options``
    go to ``from_pretrained`` (a technique's quantization config, for instance)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    model_dir = resolve_model_dir(name)
    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    id2label = dict(enumerate(label_names))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized" warnings are expected; we report the head
    hf_logging.disable_progress_bar()  # loading takes a second; its bar is noise
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_dir,
            num_labels=len(label_names),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
            dtype="float32",
            **load_options,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    model.config.pad_token_id = tokenizer.pad_token_id
    kind = model_kind(model_dir)
    if kind == "decoder":
        # A decoder classifies from its last real token: pad on the left so that is the last
        # position, also when a technique (prompt tuning) feeds embeddings instead of ids.
        tokenizer.padding_side = "left"
    head = _modules_of(info.get("missing_keys", []), model)
    return TaskModel(model=model, tokenizer=tokenizer, kind=kind, head_modules=head)


def _modules_of(parameter_names, model) -> list[str]:
    """The modules owning newly initialised parameters (e.g. ``classifier``, ``bert.pooler.dense``)."""
    modules = {n.rsplit(".", 1)[0] for n in parameter_names if "." in n}
    known = dict(model.named_modules())
    return sorted(m for m in modules if m in known)


def load_causal_lm(name: str, trust_remote_code: bool = False, **load_options) -> TaskModel:
    """A causal language model (its own LM head, nothing new) for generative fine-tuning."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    model_dir = resolve_model_dir(name)
    if model_kind(model_dir) != "decoder":
        raise FtuneError(f"model {name!r} is an encoder; generative fine-tuning needs a decoder LLM "
                         "such as smollm2-135m")
    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=trust_remote_code, dtype="float32",
                                                     **load_options)
    finally:
        hf_logging.enable_progress_bar()
    return TaskModel(model=model, tokenizer=tokenizer, kind="decoder", head_modules=[], task="causal_lm")
