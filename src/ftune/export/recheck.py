"""Load the artifact in its runtime and score it beside the PyTorch run, on the run's
held-out split: the figures of ``export.json`` and of the table ``ftune export`` prints."""

from __future__ import annotations

from typing import Any

from ftune.export.check import measure_classifier, measure_language_model, verdict
from ftune.export.torch_runtime import torch_runtime


def recheck(run, target, artifact, *, max_drop: float | None, examples: int | None, echo=print) -> dict[str, Any]:
    from ftune.runs.run_dir import directory_size

    tokenizer = run.tokenizer()
    reference_model = torch_runtime(run.load_model(), tokenizer, run.task, run.max_length)
    runtime = target.runtime(artifact, run)
    if run.task == "classification":
        from ftune.export.held_out import held_out_texts

        held_out = held_out_texts(run, examples)
        echo(f"ftune export: scoring {len(held_out.texts):,} held-out texts in PyTorch and in {artifact.runtime} ...")
        reference, predicted = measure_classifier(reference_model, held_out)
        scores, _ = measure_classifier(runtime, held_out, predicted)
    else:
        from ftune.export.held_out import held_out_responses

        held_out = held_out_responses(run, tokenizer, examples or 100)
        echo(f"ftune export: scoring {len(held_out.items):,} held-out responses and {len(held_out.prompts)} greedy "
             f"replies in PyTorch and in {artifact.runtime} ...")
        reference, replies = measure_language_model(reference_model, held_out)
        scores, artifact_replies = measure_language_model(runtime, held_out, replies)
        if hasattr(runtime, "tokenize"):  # the runtime's own tokenizer on the rendered prompts
            scores["same_tokenization"] = sum(runtime.tokenize(tokenizer.decode(p)) == list(p)
                                              for p in held_out.prompts)
        scores["replies_text"] = [{"pytorch": tokenizer.decode(a), artifact.runtime: tokenizer.decode(b)}
                                  for a, b in zip(replies, artifact_replies)]
    reference["size_mb"] = round(directory_size(run.model_dir) / 2**20, 2)
    reference["runtime"] = "PyTorch (ftune run)"
    scores["runtime"] = artifact.runtime
    judged = verdict(reference, scores, max_drop)
    return {"reference": reference, "artifact": scores,
            "verdict": {"passed": judged.passed, "drop": judged.drop, "max_drop": judged.max_drop,
                        "measure": judged.measure, "text": judged.describe()}}
