"""``ftune serve --print-vllm``: the vLLM command that serves the same LoRA runs on a GPU engine."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ftune.errors import FtuneError
from ftune.runs.run_dir import MODEL_DIR, MODEL_INFO


def vllm_command(sources: list[str]) -> tuple[str, list[str]]:
    """(the command, warnings). Every source must be a LoRA run on the same base; read from the
    runs' files, nothing loaded."""
    from ftune.models.registry import BUILTIN_MODELS

    bases, modules, ranks, warnings = set(), [], [], []
    for source in sources:
        info_path = Path(source) / MODEL_DIR / MODEL_INFO
        if not info_path.is_file():
            raise FtuneError(f"--print-vllm: {source} is not a finished ftune run")
        info = json.loads(info_path.read_text())
        if info["task"] != "causal_lm" or info["method"] not in ("lora", "rslora", "qlora"):
            raise FtuneError(f"--print-vllm: {source} is a {info['method']} {info['task']} run; vLLM serves LoRA "
                             "adapters of generative runs (export others with `ftune export --to merged`)")
        adapter = json.loads((Path(source) / MODEL_DIR / "adapter_config.json").read_text())
        if adapter.get("modules_to_save"):
            warnings.append(f"{Path(source).name}: trains whole layers ({', '.join(adapter['modules_to_save'])}); "
                            "vLLM rejects such adapters")
        base = info["base_model"]
        builtin = BUILTIN_MODELS.get(base)
        bases.add(builtin.hub_id if builtin and builtin.hub_id else base)
        ranks.append(int(adapter.get("r", 16)))
        modules.append(f"{Path(source).name}={(Path(source) / MODEL_DIR).resolve()}")
    if len(bases) != 1:
        raise FtuneError(f"--print-vllm: the runs have different bases ({', '.join(sorted(bases))}); one vLLM "
                         "server serves adapters of one base")
    parts = ["vllm", "serve", bases.pop(), "--enable-lora", "--max-loras", str(len(modules)),
             "--max-lora-rank", str(max(16, max(ranks))), "--lora-modules", *modules]
    return " ".join(shlex.quote(p) for p in parts), warnings
