"""A short model card (README.md) in every run directory."""

from __future__ import annotations

from typing import Any

from ftune.config import Config
from ftune.eval.baselines import BASELINE_TITLES


def label_table(labels: dict[str, Any], model_title: str, markdown: bool = False) -> str:
    """Fine-tuned vs base-model prompting vs classical baselines on a labeled task as chat."""
    titles = {"fine_tuned": model_title, "base_zero_shot": "base model, zero-shot prompt"}
    rows = [(titles.get(k) or (f"base model, {k.split('_')[1]}-shot prompt" if k.startswith("base_")
                              else BASELINE_TITLES.get(k, k)), v) for k, v in labels.items()]
    rows.sort(key=lambda row: row[0] != model_title)
    if markdown:
        return "\n".join(["| | accuracy | macro-F1 |", "|---|---:|---:|",
                          *(f"| {name} | {m['accuracy']:.4f} | {m['f1']:.4f} |" for name, m in rows)])
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join([" " * width + f"{'accuracy':>10}{'macro-F1':>10}",
                      *(f"{name:<{width}}{m['accuracy']:>10.4f}{m['f1']:>10.4f}" for name, m in rows)])


def results_rows(split_metrics: dict[str, Any], model_title: str) -> list[tuple[str, dict[str, Any]]]:
    rows = [(model_title, split_metrics["model"])]
    rows += [(BASELINE_TITLES.get(k, k), v) for k, v in split_metrics.items() if k != "model"]
    return rows


def results_table(split_metrics: dict[str, Any], model_title: str, markdown: bool = False) -> str:
    """Accuracy / macro-F1 / loss for the model and each baseline, as text or markdown."""
    rows = results_rows(split_metrics, model_title)
    if markdown:
        lines = ["| | accuracy | macro-F1 | precision | recall |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {name} | {m['accuracy']:.4f} | {m['f1']:.4f} | {m['precision']:.4f} | {m['recall']:.4f} |"
                  for name, m in rows]
        return "\n".join(lines)
    width = max(len(name) for name, _ in rows) + 2
    lines = [" " * width + f"{'accuracy':>10}{'macro-F1':>10}{'loss':>9}"]
    for name, m in rows:
        loss = f"{m['loss']:.4f}" if m.get("loss") is not None else "-"
        lines.append(f"{name:<{width}}{m['accuracy']:>10.4f}{m['f1']:>10.4f}{loss:>9}")
    return "\n".join(lines)


def _file_lines(manifest: dict[str, Any]) -> str:
    return "\n".join(
        f"- {f['role']}: `{f['path']}` ({f.get('format', manifest.get('format', 'labeled rows'))}, "
        f"sha256 `{f['sha256'][:12]}…`, {f['used_rows']:,} rows used, {f['bad_rows']} bad rows skipped)"
        for f in manifest["files"])


def write_model_card(run, config: Config, manifest: dict[str, Any], metrics: dict[str, Any]) -> None:
    training = metrics["training"]
    title = f"{config.model.name} + {config.method.name}"
    files = _file_lines(manifest)
    sections = [
        f"# {title}: text classifier trained with ftune",
        f"Labels: {', '.join(manifest['labels'])}.",
        "## How it was trained",
        f"- base model: `{config.model.name}`; technique: `{config.method.name}` "
        f"({training['trainable_parameters']:,} of {training['total_parameters']:,} parameters trained, "
        f"{training['trainable_share']:.2%})\n"
        f"- {training['optimizer_steps']} optimizer steps ({training['epochs']} epochs) in {training['seconds']} s "
        f"on {training['device']} ({training['precision']}); seed {config.train.seed}\n"
        "- full settings: `config.yaml`; data: `data.json`; step log: `log.jsonl`",
        "## Data", files,
        f"Split: {manifest['split']['train']:,} train / {manifest['split']['validation']:,} validation "
        f"({manifest['split']['validation_from']}).",
    ]
    for split_name, split_metrics in metrics.items():
        if split_name == "training":
            continue
        sections += [f"## Results on the {split_name} split ({split_metrics['model']['n']:,} rows)",
                     results_table(split_metrics, title, markdown=True)]
    sections += [
        "## Use",
        f"```\nftune predict {run.path} \"some text\"\nftune eval {run.path} --data labeled.csv\n```",
        "## Limitations",
        "Measured only on the split above, which comes from the same source as the training data; "
        "expect lower accuracy on text unlike it. The baselines show what a cheap model already achieves.",
    ]
    run.write_text("README.md", "\n\n".join(sections) + "\n")


def write_generative_card(run, config: Config, manifest: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Model card of a generative (SFT) run: data, template, before vs after."""
    training, before, after = metrics["training"], metrics["validation"]["before"], metrics["validation"]["after"]
    files = _file_lines(manifest)
    rows = ["| | response loss | perplexity | samples ending with EOS |", "|---|---:|---:|---:|"]
    for name, scores in (("base model (before)", before), ("fine-tuned (after)", after)):
        eos = f"{scores.get('samples_ended_with_eos', 0)} / {scores.get('samples', 0)}"
        rows.append(f"| {name} | {scores['loss']:.4f} | {scores['perplexity']:.2f} | {eos} |")
    sections = [
        f"# {config.model.name} + {config.method.name}: instruction-tuned with ftune",
        "## How it was trained",
        f"- base model: `{config.model.name}`; technique: `{config.method.name}` "
        f"({training['trainable_parameters']:,} of {training['total_parameters']:,} parameters trained, "
        f"{training['trainable_share']:.2%})\n"
        f"- objective: SFT, loss on response tokens and the end-of-turn token only; template `{manifest['template']}`\n"
        f"- {training['optimizer_steps']} optimizer steps ({training['epochs']} epochs) in {training['seconds']} s, "
        f"{training['tokens_per_second']} real tokens/s on {training['device']} ({training['precision']})",
        "## Data", files,
        f"Split: {manifest['split']['train']:,} train / {manifest['split']['validation']:,} validation "
        f"({manifest['split']['validation_from']}).",
        f"## Held-out results ({after['n']:,} examples, {after['tokens']:,} response tokens)",
        "\n".join(rows),
        "Generation samples (greedy), before and after: `samples.json`.",
        *(["## Label accuracy (labeled task as chat; label chosen by likelihood)",
            label_table(metrics["validation"]["labels"], f"{config.model.name} + {config.method.name} (SFT)",
                        markdown=True)] if "labels" in metrics["validation"] else []),
        "## Use",
        f"```\nftune generate {run.path} \"Write a haiku about autumn.\"\nftune chat {run.path}\n```",
    ]
    run.write_text("README.md", "\n\n".join(sections) + "\n")


def write_preference_card(run, config: Config, manifest: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Model card of a DPO run: data, template, held-out preference scores before vs after."""
    training, before, after = metrics["training"], metrics["validation"]["before"], metrics["validation"]["after"]
    files = _file_lines(manifest)
    rows = ["| | preference accuracy | reward margin | likelihood accuracy |", "|---|---:|---:|---:|"]
    for name, scores in (("before training", before), ("after training", after)):
        rows.append(f"| {name} | {scores['preference_accuracy']:.4f} | {scores['reward_margin']:.4f} | "
                    f"{scores['likelihood_accuracy']:.4f} |")
    sections = [
        f"# {config.model.name} + {config.method.name}: preference-tuned (DPO) with ftune",
        "## How it was trained",
        f"- base model: `{config.model.name}`; technique: `{config.method.name}` "
        f"({training['trainable_parameters']:,} of {training['total_parameters']:,} parameters trained)\n"
        f"- objective: DPO (TRL), beta {config.objective.beta}; reference: "
        f"{'the base model with the adapters disabled' if run_uses_adapter(config) else 'a frozen copy of the base model'}\n"
        f"- template `{manifest['template']}`; {training['optimizer_steps']} optimizer steps in {training['seconds']} s",
        "## Data", files,
        f"## Held-out preference pairs ({after['n']:,})",
        "\n".join(rows),
        "Preference accuracy and reward margin use DPO's implicit reward against the reference; "
        "before training they are 0.5 and 0 by construction. Likelihood accuracy: the model alone "
        "finds the chosen reply more likely per token.",
    ]
    run.write_text("README.md", "\n\n".join(sections) + "\n")


def run_uses_adapter(config: Config) -> bool:
    from ftune.methods import get_method_class

    return get_method_class(config.method.name).saves_adapter
