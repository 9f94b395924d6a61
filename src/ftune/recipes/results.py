"""A run's results as tables, built once from its ``metrics.json``: the command line prints
them as text, the model card as markdown. Each objective says which tables it has; the
layout lives here only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ftune.eval.baselines import BASELINE_TITLES


@dataclass(frozen=True)
class Column:
    title: str
    key: str
    format: str = ".4f"

    def cell(self, scores: dict[str, Any]) -> str:
        value = scores.get(self.key)
        if value is None:
            return "-"
        shown = format(value, self.format) if self.format else str(value)
        interval = scores.get(f"{self.key}_ci")  # 95% bootstrap: shown as ± half its width
        if interval and None not in interval:
            shown += f" ± {(interval[1] - interval[0]) / 2:.3f}"
        return shown


@dataclass
class Table:
    """A titled table: one row per model or baseline, one column per metric."""

    title: str
    columns: list[Column]
    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    note: str = ""

    def text(self) -> str:
        width = max(len(name) for name, _ in self.rows) + 2
        widths = [max(10, len(c.title) + 2, *(len(c.cell(s)) + 2 for _, s in self.rows)) for c in self.columns]
        lines = [f"{self.title}:", " " * width + "".join(f"{c.title:>{w}}" for c, w in zip(self.columns, widths))]
        lines += [f"{name:<{width}}" + "".join(f"{c.cell(s):>{w}}" for c, w in zip(self.columns, widths))
                  for name, s in self.rows]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"## {self.title[0].upper()}{self.title[1:]}", "",
                 "| | " + " | ".join(c.title for c in self.columns) + " |",
                 "|---|" + "---:|" * len(self.columns)]
        lines += [f"| {name} | " + " | ".join(c.cell(s) for c in self.columns) + " |" for name, s in self.rows]
        return "\n".join(lines + ([f"\n{self.note}"] if self.note else []))


CLASSIFIER_COLUMNS = [Column("accuracy", "accuracy"), Column("macro-F1", "f1"), Column("precision", "precision"),
                      Column("recall", "recall"), Column("loss", "loss")]


def model_title(config) -> str:
    return f"{config.model.name} + {config.method.name}"


def classification_tables(config, metrics: dict[str, Any]) -> list[Table]:
    tables = []
    for split in ("validation", "test"):
        if split in metrics:
            scores = metrics[split]
            rows = [(model_title(config), scores["model"])]
            rows += [(BASELINE_TITLES.get(k, k), v) for k, v in scores.items() if k != "model"]
            tables.append(Table(f"{split} split ({scores['model']['n']:,} rows)", CLASSIFIER_COLUMNS, rows,
                                note="± : half the width of a 95% bootstrap interval over the held-out rows "
                                     "(1,000 resamples)."))
    return tables


def sft_tables(config, metrics: dict[str, Any]) -> list[Table]:
    validation = metrics["validation"]
    before, after = validation["before"], validation["after"]

    def with_eos(scores):
        if not scores.get("samples"):
            return {**scores, "ended": "-"}
        return {**scores, "ended": f"{scores.get('samples_ended_with_eos', 0)} / {scores.get('samples', 0)}"}

    titles = generative_titles(config)
    rows = [(titles["before"], with_eos(before))]
    rows += [(titles.get(key, key), with_eos(scores)) for key, scores in validation.items()
             if key.startswith("base_") and isinstance(scores, dict) and "perplexity" in scores]
    rows.append((titles["after"], with_eos(after)))
    tables = [Table(f"validation ({after['n']:,} examples, {after['tokens']:,} response tokens)",
                    [Column("loss", "loss"), Column("perplexity", "perplexity", ".2f"),
                     Column("samples ending with EOS", "ended", "")], rows,
                    note="Perplexity on the held-out replies only, the same tokens for every row; ± : half the "
                         "width of a 95% bootstrap interval over the held-out examples (1,000 resamples). Few-shot "
                         "rows put solved training examples before each prompt (fewer where they would not fit). "
                         "Generation samples (greedy), base and fine-tuned side by side: `samples.json`.")]
    if "labels" in validation:
        tables.append(label_table(config, validation["labels"]))
    return tables


def generative_titles(config) -> dict[str, str]:
    """Row titles of an SFT run's entries (before, prompting baselines, after, label baselines)."""
    from ftune.eval.prompting_baselines import few_shot_key, retrieval_key

    k = config.eval.few_shot
    return {"before": "base model, zero-shot", "base_zero_shot": "base model, zero-shot prompt",
            few_shot_key(k): f"base model, {k}-shot prompt, fixed examples",
            retrieval_key(k): f"base model, {k}-shot prompt, retrieved by {config.eval.retrieval}",
            "after": f"{model_title(config)} (fine-tuned)", "fine_tuned": f"{model_title(config)} (SFT)",
            **BASELINE_TITLES}


def label_table(config, labels: dict[str, Any]) -> Table:
    """Fine-tuned vs base-model prompting vs classical baselines on a labeled task as chat."""
    titles = generative_titles(config)
    rows = sorted(((titles.get(k, k), v) for k, v in labels.items()), key=lambda row: row[0] != titles["fine_tuned"])
    n = labels["fine_tuned"]["n"] if "fine_tuned" in labels else next(iter(labels.values()))["n"]
    return Table(f"label accuracy on the validation split ({n:,} rows, label chosen by likelihood)",
                 [Column("accuracy", "accuracy"), Column("macro-F1", "f1")], rows,
                 note="± : half the width of a 95% bootstrap interval over the held-out rows (1,000 resamples).")


def dpo_tables(config, metrics: dict[str, Any]) -> list[Table]:
    before, after = metrics["validation"]["before"], metrics["validation"]["after"]
    return [Table(f"held-out preference pairs ({after['n']:,})",
                  [Column("preference acc.", "preference_accuracy"), Column("reward margin", "reward_margin"),
                   Column("likelihood acc.", "likelihood_accuracy")],
                  [("before training", before), ("after training", after)],
                  note="Preference accuracy and reward margin use DPO's implicit reward against the reference; "
                       "before training they are 0.5 and 0 by construction. Likelihood accuracy: the model alone "
                       "finds the chosen reply more likely per token. ± : half the width of a 95% bootstrap "
                       "interval over the held-out pairs (1,000 resamples).")]


RESULT_TABLES: dict[str, Callable[[Any, dict[str, Any]], list[Table]]] = {
    "classification": classification_tables, "sft": sft_tables, "dpo": dpo_tables}


def result_tables(objective: str, config, metrics: dict[str, Any]) -> list[Table]:
    """The held-out results of a run of ``objective``, as tables."""
    return RESULT_TABLES[objective](config, metrics)


def training_summary(training: dict[str, Any]) -> list[str]:
    """Steps, time (training and held-out evaluation apart), speed and memory, in two lines."""
    rate = f", {training['tokens_per_second']:.0f} real tokens/s" if training.get("tokens_per_second") else ""
    evaluating = training.get("evaluation_seconds") or 0
    spent = f"{training['seconds'] - evaluating:.0f} s" + (f" (+ {evaluating:.0f} s of held-out evaluation)"
                                                           if evaluating >= 1 else "")
    lines = [f"trained {training['trainable_parameters']:,} parameters ({training['trainable_share']:.2%}) "
             f"for {training['optimizer_steps']} steps in {spent}{rate}"]
    plan = training.get("memory_plan")
    peak = f"peak memory {training['peak_training_memory_mb']:,.0f} MB"
    if plan:
        passes = (f"micro-batches of ≤ {plan['micro_batch_tokens']:,} tokens" if plan["micro_batch_tokens"]
                  else "whole batches") + (", gradient checkpointing" if plan["gradient_checkpointing"] else "")
        peak += f" (planned ≈ {plan['estimate_mb']:,.0f} MB of a {plan['budget_mb']:,.0f} MB budget; {passes})"
    return lines + [peak]
