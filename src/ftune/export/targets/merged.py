"""``--to merged``: one standalone Hugging Face model directory that plain transformers loads
(``AutoModelFor...from_pretrained(DIR)``), with no ftune or peft import."""

from __future__ import annotations

from pathlib import Path

from ftune.export.finished_run import FinishedRun
from ftune.export.target import Artifact, ExportOptions, ExportTarget, register_target


@register_target("merged")
class MergedTarget(ExportTarget):
    """Adapters (LoRA, DoRA, rsLoRA, IA3, LoHa) merged with PEFT's ``safe_merge``; QLoRA merged
    into its base dequantized to ``--dtype``; full, freeze and BitFit runs saved as they are.
    Files: ``model.safetensors``, ``config.json`` (``id2label`` / ``label2id`` for classifiers),
    ``generation_config.json`` (with the end-of-turn ids), the tokenizer and chat template."""

    description = "standalone transformers model (safetensors), adapters merged"
    file_names = "model.safetensors, config.json, generation_config.json, tokenizer files"

    def problem(self, run: FinishedRun, options: ExportOptions) -> str | None:
        from ftune.export.merging import DTYPES, can_merge

        problem = super().problem(run, options)
        if problem:
            return problem
        if options.dtype not in DTYPES:
            return f"--dtype {options.dtype}: choose {', '.join(DTYPES)}"
        if not can_merge(run.method):
            return f"technique {run.method_name!r} adds weights that do not fold into the base model's"
        return None

    def write(self, run: FinishedRun, out: Path, options: ExportOptions, echo=print) -> Artifact:
        from ftune.export.merging import merged_model

        model = merged_model(run, options.dtype)
        tokenizer = run.tokenizer()
        if run.task == "causal_lm":
            from ftune.data.encode import stop_token_ids

            stops = stop_token_ids(tokenizer)
            model.generation_config.eos_token_id = stops
            model.generation_config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
                else stops[0]
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        files = sorted(p.name for p in out.iterdir() if p.is_file())
        return Artifact(out, files, "transformers", {"dtype": options.dtype, "merged_from": run.method_name})

    def runtime(self, artifact: Artifact, run: FinishedRun):
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        from ftune.export.torch_runtime import torch_runtime

        auto = AutoModelForSequenceClassification if run.task == "classification" else AutoModelForCausalLM
        model = auto.from_pretrained(artifact.directory).eval()
        return torch_runtime(model, AutoTokenizer.from_pretrained(artifact.directory), run.task, run.max_length)
