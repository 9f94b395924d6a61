"""``--to gguf-lora``: a GGUF LoRA adapter that llama.cpp applies on top of the base GGUF; for
``smollm2-135m`` the very Q4_1 file its package ships, so the artifact is a few MB."""

from __future__ import annotations

from pathlib import Path

from ftune.export.finished_run import FinishedRun
from ftune.export.target import Artifact, ExportOptions, ExportTarget, register_target

ADAPTER_FILE = "adapter.gguf"
BASE_FILE = "base.gguf"


@register_target("gguf-lora")
class GgufLoraTarget(ExportTarget):
    """Tensors ``<base tensor>.lora_a`` / ``.lora_b`` (q/k ``lora_b`` rows permuted like the base),
    ``adapter.lora.alpha``. llama.cpp scales each pair by alpha / rank, so PEFT's own scale of each
    layer (alpha / r, rsLoRA's alpha / sqrt(r), rank and alpha patterns) is folded into ``lora_b``.
    Files: ``adapter.gguf``; ``base.gguf`` (F16) too, unless the base is a built-in GGUF model,
    whose own file is the base."""

    description = "a GGUF LoRA adapter applied by llama.cpp on the base GGUF (a few MB)"
    file_names = f"{ADAPTER_FILE} (+ {BASE_FILE} when the base has no GGUF of its own)"
    tasks = ("causal_lm",)

    def problem(self, run: FinishedRun, options: ExportOptions) -> str | None:
        from ftune.export.targets.gguf import gguf_problem

        problem = gguf_problem(self, run, options)
        if problem:
            return problem
        if run.method_name not in ("lora", "rslora", "qlora") or run.info.get("method_options", {}).get("use_dora"):
            return (f"technique {run.method_name!r}: a GGUF LoRA adapter holds plain low-rank pairs only "
                    "(no DoRA magnitudes, IA3 or LoHa factors); --to gguf merges them instead")
        if run.info.get("merged_from"):
            return "the run saved a merged model (run.merge=true): no adapter is left; use --to gguf"
        adapter_config = run.model_dir / "adapter_config.json"
        if adapter_config.is_file():
            import json

            whole = json.loads(adapter_config.read_text()).get("modules_to_save") or []
            if whole:
                return (f"the run trained whole layers ({', '.join(whole)}) beside the low-rank pairs; a GGUF "
                        "LoRA adapter cannot hold them; --to gguf merges them instead")
        return None

    def write(self, run: FinishedRun, out: Path, options: ExportOptions, echo=print) -> Artifact:
        from ftune.export.gguf_lora_writer import write_lora_gguf
        from ftune.export.targets.gguf import source_gguf

        model = run.load_model()
        base_gguf = source_gguf(run)
        files = [ADAPTER_FILE]
        pairs = write_lora_gguf(model, out / ADAPTER_FILE, name=f"{run.base_model}-{run.method_name}-ftune")
        if base_gguf is None:
            self._write_base(run, out / BASE_FILE, echo)
            files.append(BASE_FILE)
        details = {"lora_pairs": pairs, "base_gguf": str(base_gguf) if base_gguf else BASE_FILE}
        return Artifact(out, files, "llama.cpp + LoRA", details, model_files=[ADAPTER_FILE])

    def _write_base(self, run: FinishedRun, path: Path, echo) -> None:
        from ftune.export.gguf_writer import write_llama_gguf
        from ftune.models.load import load_causal_lm

        echo(f"ftune export: the base has no GGUF of its own; writing {path.name} (f16) ...")
        task = load_causal_lm(run.base_model)
        eos = task.tokenizer.eos_token_id
        write_llama_gguf(task.model, task.tokenizer, path, quant="f16", source_gguf=None, name=run.base_model,
                         chat_template=getattr(task.tokenizer, "chat_template", None), eos_id=eos)

    def runtime(self, artifact: Artifact, run: FinishedRun):
        from ftune.export.llama_cpp_runtime import LlamaCppLanguageModel

        base = artifact.details["base_gguf"]
        base_path = artifact.directory / base if base == BASE_FILE else Path(base)
        return LlamaCppLanguageModel(base_path, lora_path=artifact.directory / ADAPTER_FILE,
                                     n_ctx=run.max_length + 64)
