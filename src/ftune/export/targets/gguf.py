"""``--to gguf``: one GGUF file of the merged model that llama.cpp runs."""

from __future__ import annotations

from pathlib import Path

from ftune.export.finished_run import FinishedRun
from ftune.export.target import Artifact, ExportOptions, ExportTarget, register_target

QUANTS = ("f16", "q8_0")
GGUF_FILE = "model.gguf"


def base_architecture(run: FinishedRun) -> str:
    """The base model's ``model_type``, read from its files (nothing loaded)."""
    import json

    from ftune.models.registry import BUILTIN_MODELS

    builtin = BUILTIN_MODELS.get(run.base_model)
    if builtin is not None:
        return "llama" if builtin.is_gguf else "bert"
    config = Path(run.base_model) / "config.json"
    return json.loads(config.read_text()).get("model_type", "?") if config.is_file() else "?"


def source_gguf(run: FinishedRun) -> Path | None:
    """The GGUF file a built-in base was converted from: its tokenizer metadata is reused."""
    from ftune.models.registry import BUILTIN_MODELS, package_folder

    builtin = BUILTIN_MODELS.get(run.base_model)
    if builtin is None or not builtin.is_gguf:
        return None
    folder = package_folder(builtin)
    return Path(folder) / builtin.relative_path if folder else None


def gguf_problem(target: ExportTarget, run: FinishedRun, options: ExportOptions) -> str | None:
    problem = ExportTarget.problem(target, run, options)
    if problem:
        return problem
    if options.quant not in QUANTS:
        return f"--quant {options.quant}: choose {', '.join(QUANTS)}"
    architecture = base_architecture(run)
    if architecture != "llama":
        return f"the base model is {architecture!r}; GGUF export writes Llama models"
    return None


@register_target("gguf")
class GgufTarget(ExportTarget):
    """The merged weights (q/k rows permuted as llama.cpp expects), in F16 or Q8_0; the
    tokenizer and pre-tokenizer; the run's chat template; its end-of-turn token as EOS.
    File: ``model.gguf``."""

    description = "one GGUF file (merged, --quant f16|q8_0) for llama.cpp / Ollama"
    file_names = GGUF_FILE
    tasks = ("causal_lm",)

    def problem(self, run: FinishedRun, options: ExportOptions) -> str | None:
        from ftune.export.merging import can_merge

        problem = gguf_problem(self, run, options)
        if problem is None and not can_merge(run.method):
            problem = f"technique {run.method_name!r} adds weights that do not fold into the base model's"
        return problem

    def write(self, run: FinishedRun, out: Path, options: ExportOptions, echo=print) -> Artifact:
        from ftune.data.templates import resolve_template
        from ftune.export.gguf_writer import write_llama_gguf
        from ftune.export.merging import merged_model

        model = merged_model(run, "fp32")
        tokenizer = run.tokenizer()
        template = getattr(tokenizer, "chat_template", None)
        marker = resolve_template(run.info.get("template", "auto"), tokenizer).end_of_turn
        end_of_turn = tokenizer.convert_tokens_to_ids(marker) if marker else tokenizer.eos_token_id
        echo(f"ftune export: writing {GGUF_FILE} ({options.quant}) ...")
        count = write_llama_gguf(model, tokenizer, out / GGUF_FILE, quant=options.quant, source_gguf=source_gguf(run),
                                 name=f"{run.base_model}-{run.method_name}-ftune", chat_template=template,
                                 eos_id=end_of_turn)
        details = {"quant": options.quant, "tensors": count, "eos_token_id": end_of_turn,
                   "chat_template": "the run's tokenizer's" if template else "none (the run used ftune's "
                                    f"{run.info.get('template')!r} template)"}
        return Artifact(out, [GGUF_FILE], "llama.cpp", details)

    def runtime(self, artifact: Artifact, run: FinishedRun):
        from ftune.export.llama_cpp_runtime import LlamaCppLanguageModel

        return LlamaCppLanguageModel(artifact.directory / GGUF_FILE, n_ctx=run.max_length + 64)
