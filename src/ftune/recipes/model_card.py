"""The model card (README.md) in every run directory: one layout for every objective, its
results the same tables the command line prints (``recipes.results``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftune.config import Config
from ftune.recipes.results import model_title, result_tables

HEADLINES = {"classification": "text classifier trained with ftune",
             "sft": "instruction-tuned with ftune",
             "dpo": "preference-tuned (DPO) with ftune"}


def objective_line(objective: str, config: Config, manifest: dict[str, Any]) -> str:
    if objective == "classification":
        return f"- objective: classification; labels {', '.join(manifest['labels'])}"
    if objective == "sft":
        return (f"- objective: SFT, loss on response tokens and the end-of-turn token only; "
                f"template `{manifest['template']}`")
    reference = ("the base model with the adapters disabled" if run_uses_adapter(config)
                 else "a frozen copy of the base model")
    return f"- objective: DPO (TRL), beta {config.objective.beta}; reference: {reference}; template `{manifest['template']}`"


USAGE = {"classification": 'ftune predict {run} "some text"\nftune eval {run} --data labeled.csv',
         "sft": 'ftune generate {run} "Write a haiku about autumn."\nftune chat {run}',
         "dpo": 'ftune generate {run} "Write a haiku about autumn."\nftune eval {run} --data pairs.jsonl'}


def write_model_card(run, config: Config, objective: str, manifest: dict[str, Any], metrics: dict[str, Any]) -> None:
    """README.md: how the run was trained, on what data, its held-out results against the
    baselines, and how to use it."""
    training = metrics["training"]
    evaluating = training.get("evaluation_seconds") or 0
    rate = f", {training['tokens_per_second']} real tokens/s" if training.get("tokens_per_second") else ""
    split = manifest["split"]
    verdict = metrics.get("verdict")
    sections = [
        f"# {model_title(config)}: {HEADLINES[objective]}",
        *([f"**Verdict** ({verdict['split']} split): {verdict['text']}."] if verdict else []),
        "## How it was trained",
        "\n".join([
            f"- base model: `{config.model.name}`; technique: `{config.method.name}` "
            f"({training['trainable_parameters']:,} of {training['total_parameters']:,} parameters trained, "
            f"{training['trainable_share']:.2%})",
            objective_line(objective, config, manifest),
            f"- {training['optimizer_steps']} optimizer steps ({training['epochs']} epochs) in "
            f"{training['seconds'] - evaluating:.0f} s of training (+ {evaluating:.0f} s of held-out evaluation)"
            f"{rate} on {training['device']} ({training['precision']}); seed {config.train.seed}",
            "- full settings: `config.yaml`; data: `data.json`; step log: `log.jsonl`; scores: `metrics.json`"]),
        "## Data",
        _file_lines(manifest),
        f"Split: {split['train']:,} train / {split['validation']:,} validation ({split['validation_from']}).",
        *(table.markdown() for table in result_tables(objective, config, metrics)),
        *([_failures(run)] if objective == "classification" else []),
        *([_side_by_side(run)] if objective == "sft" else []),
        "## Use",
        "```\n" + USAGE[objective].format(run=run.path) + "\n```",
        "## Limitations",
        "Measured only on the held-out split above, which comes from the same source as the training data; "
        "expect lower scores on data unlike it. The baselines show what a cheap alternative already achieves.",
    ]
    run.write_text("README.md", "\n\n".join(sections) + "\n")


def _file_lines(manifest: dict[str, Any]) -> str:
    return "\n".join(
        f"- {f['role']}: `{f['path']}` ({f.get('format', manifest.get('format', 'labeled rows'))}, "
        f"sha256 `{f['sha256'][:12]}…`, {f['used_rows']:,} rows used, {f['bad_rows']} bad rows skipped)"
        for f in manifest["files"])


def run_uses_adapter(config: Config) -> bool:
    from ftune.methods import get_method_class

    return get_method_class(config.method.name).saves_adapter


def _failures(run) -> str:
    """The most frequent kinds of mistake on the validation split, each with its most confident example."""
    import json

    from ftune.eval.failures import top_confusions

    path = Path(run.path) / "errors.jsonl"
    errors = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    if not errors:
        return "## Mistakes\n\nNone on the validation split."
    lines = ["## Mistakes", "", f"{len(errors):,} validation rows wrong (all in `errors.jsonl`, most confident "
             "first). The most frequent confusions, each with its most confident example:", ""]
    for true, predicted, count in top_confusions(errors):
        example = next(e for e in errors if e["true"] == true and e["predicted"] == predicted)
        text = example["text"] if len(example["text"]) <= 160 else example["text"][:157] + "..."
        lines.append(f"- true `{true}`, predicted `{predicted}`: {count:,} rows; e.g. \"{text}\" "
                     f"({example['confidence']:.2f})")
    return "\n".join(lines)


def _side_by_side(run, count: int = 3) -> str:
    """Base and fine-tuned greedy replies to a few held-out prompts (``samples.json``)."""
    import json

    path = Path(run.path) / "samples.json"
    samples = json.loads(path.read_text()) if path.is_file() else []
    if not samples:
        return "## Replies, base and fine-tuned\n\nNo samples (generate.samples=0)."
    contrasted = "loss_per_token" in samples[0]
    lines = ["## Replies, base and fine-tuned", "",
             ("The held-out prompts whose replies changed most in likelihood per token" if contrasted
              else "The first held-out prompts") + f"; greedy replies (all {len(samples)} in `samples.json`):", ""]
    for sample in samples[:count]:
        prompt = next((m["content"] for m in reversed(sample["prompt"]) if m["role"] == "user"), "")
        change = (f" (reference reply's loss per token {sample['loss_per_token']['before']:.2f} → "
                  f"{sample['loss_per_token']['after']:.2f})" if contrasted else "")
        lines += [f"- prompt: {_short(prompt)}{change}", f"  - base: {_short(sample['before']['reply'])}",
                  f"  - fine-tuned: {_short(sample['after']['reply'])}"]
    return "\n".join(lines)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
