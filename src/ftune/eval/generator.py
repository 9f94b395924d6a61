"""Load something that generates: a finished SFT run, or a base model by name or directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftune.errors import FtuneError
from ftune.runs.run_dir import MODEL_DIR, MODEL_INFO


@dataclass
class Generator:
    model: Any
    tokenizer: Any
    template: Any  # ftune.data.templates.Template
    source: str
    method: Any = None  # the run's technique (ftune.methods.Method); None for a plain model

    def reply(self, messages, *, max_new_tokens: int, temperature: float, top_p: float, seed: int = 0,
              stream: bool = False) -> dict[str, Any]:
        """Generate the next assistant turn after ``messages`` (a list of Message)."""
        from ftune.data.masking import encode_prompt
        from ftune.eval.generative import generate_replies
        from ftune.data.encode import stop_token_ids

        streamer = None
        if stream:
            from transformers import TextStreamer

            streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        prompt = encode_prompt(messages, self.template, self.tokenizer)
        return generate_replies(self.model, self.tokenizer, [prompt], max_new_tokens=max_new_tokens,
                                temperature=temperature, top_p=top_p, eos_ids=stop_token_ids(self.tokenizer),
                                seed=seed, streamer=streamer)[0]


def require_finished_run(path: str | Path) -> None:
    """A run directory (it has config.yaml or runs/ in its path) must hold a finished model."""
    path = Path(path)
    looks_like_run = (path / "config.yaml").is_file() or path.parent.name == "runs"
    if looks_like_run and path.is_dir() and not (path / MODEL_DIR / MODEL_INFO).is_file():
        raise FtuneError(f"{path}: not a finished ftune run (no {MODEL_DIR}/{MODEL_INFO}); the run may have "
                         "been interrupted before its model was saved")


def load_generator(run_or_model: str, template: str | None = None, trust_remote_code: bool = False) -> Generator:
    """A run directory written by an SFT run, a built-in model name, or a local model directory."""
    from ftune.data.templates import resolve_template
    from ftune.methods import build_method
    from ftune.models.load import load_causal_lm, load_tokenizer

    info_path = Path(run_or_model) / MODEL_DIR / MODEL_INFO
    require_finished_run(run_or_model)
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("task") != "causal_lm":
            raise FtuneError(f"{run_or_model}: a {info.get('task')} run cannot generate text; "
                             "use `ftune predict` for classifiers")
        model_dir = info_path.parent
        method = build_method(info["method"], info.get("method_options"))
        model = method.load_saved(model_dir, lambda **options: load_causal_lm(info["base_model"], **options).model, task="causal_lm")
        tokenizer = load_tokenizer(model_dir)
        chosen = template or info.get("template", "auto")
    else:
        task = load_causal_lm(run_or_model, trust_remote_code)
        model, tokenizer, chosen, method = task.model, task.tokenizer, template or "auto", None
    model.eval()
    return Generator(model, tokenizer, resolve_template(chosen, tokenizer), str(run_or_model), method)
