"""Turn finished comparison slots into table rows (technique and baseline) and loss curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ftune.comparison.plan import ComparePlan, Slot
from ftune.eval.baselines import BASELINE_TITLES

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
AVERAGED = ("trainable_params", "trainable_share", "peak_memory_mb", "peak_rss_mb", "model_memory_mb", "wall_time_s", "train_seconds",
            "train_steps", "tokens_per_s", "ship_size_mb")
METRICS = ("accuracy", "f1", "perplexity", "preference_accuracy", "reward_margin")
# half the width of each run's 95% bootstrap interval over held-out examples: the spread that
# comes from the examples, reported apart from the spread across seeds (<metric>_std)
HALF_WIDTHS = tuple(f"{m}_ci95" for m in ("accuracy", "perplexity", "preference_accuracy"))


def slot_record(plan: ComparePlan, directory: Path, slot: Slot) -> dict[str, Any] | None:
    """What one finished slot measured, or None if it has not run yet."""
    result_path = directory / slot.name / "result.json"
    if not result_path.exists():
        return None
    result = json.loads(result_path.read_text())
    record: dict[str, Any] = {"method": slot.method, "seed": slot.seed, "status": result["status"],
                              "note": result.get("note", ""), "wall_time_s": result.get("wall_time_s"),
                              "peak_rss_mb": result.get("peak_rss_mb"), "peak_memory_mb": result.get("peak_rss_mb")}
    run_dir = Path(result["run_dir"]) if result.get("run_dir") else None
    if run_dir is None or not (run_dir / "metrics.json").exists():
        return record
    metrics = json.loads((run_dir / "metrics.json").read_text())
    training = metrics.get("training", {})
    record.update({
        "trainable_params": training.get("trainable_parameters"), "trainable_share": training.get("trainable_share"),
        "train_seconds": training.get("seconds"), "train_steps": training.get("optimizer_steps"),
        "tokens_per_s": training.get("tokens_per_second"), "ship_size_mb": weights_size_mb(run_dir / "model"),
        "model_memory_mb": training.get("model_memory_mb"),
    })
    if training.get("peak_training_memory_mb") is not None:  # training alone, not data loading or baselines
        record["peak_memory_mb"] = training["peak_training_memory_mb"]
    record.update(task_metrics(metrics))
    if metrics.get("verdict"):
        record["verdict"] = metrics["verdict"]["text"]
    record["baselines"] = baseline_metrics(metrics)
    record["curve"] = loss_curve(run_dir / "log.jsonl")
    mistakes = top_mistakes(run_dir / "errors.jsonl")
    if mistakes:
        record["mistakes"] = mistakes
    return record


def task_metrics(metrics: dict) -> dict[str, float]:
    validation = metrics.get("validation", {})
    if "model" in validation:  # classification
        return {"accuracy": validation["model"]["accuracy"], "f1": validation["model"]["f1"],
                **half_widths(validation["model"])}
    after = validation.get("after", {})
    scores = {}
    if "perplexity" in after:
        scores["perplexity"] = after["perplexity"]
    for key in ("preference_accuracy", "reward_margin"):  # DPO
        if key in after:
            scores[key] = after[key]
    scores.update(half_widths(after))
    fine_tuned = validation.get("labels", {}).get("fine_tuned")
    if fine_tuned:  # a labeled task trained as chat
        scores.update({"accuracy": fine_tuned["accuracy"], "f1": fine_tuned["f1"], **half_widths(fine_tuned)})
    return scores


def half_widths(scores: dict) -> dict[str, float]:
    """``<metric>_ci95``: half the width of the scores' 95% intervals (``<metric>_ci``)."""
    found = {}
    for key in HALF_WIDTHS:
        interval = scores.get(key.replace("_ci95", "_ci"))
        if interval and None not in interval:
            found[key] = (interval[1] - interval[0]) / 2
    return found


BASELINE_NAMES = {**BASELINE_TITLES, "base_zero_shot": "base model, zero-shot"}


def baseline_name(key: str) -> str:
    """``base_4_shot`` -> "base model, 4-shot"; ``base_retrieval_4_shot`` -> "base model, 4-shot
    retrieved"; other keys by their titles."""
    parts = key.split("_")
    if key.startswith("base_") and key.endswith("_shot") and parts[-2].isdigit():
        return f"base model, {parts[-2]}-shot" + (" retrieved" if "retrieval" in parts else "")
    return BASELINE_NAMES.get(key, key.replace("_", " "))


def baseline_metrics(metrics: dict) -> dict[str, dict[str, float]]:
    """Baselines measured on the same split: cheap classifiers, the untuned base model."""
    validation = metrics.get("validation", {})
    found: dict[str, dict[str, float]] = {}
    for source in (validation, validation.get("labels", {})):
        for key, scores in source.items():
            if key in ("model", "fine_tuned", "before", "after", "labels") or not isinstance(scores, dict):
                continue
            if "accuracy" in scores:
                found[baseline_name(key)] = {"accuracy": scores["accuracy"], "f1": scores.get("f1"),
                                             **half_widths(scores)}
            elif "perplexity" in scores:  # the base model prompted with training examples (SFT)
                found[baseline_name(key)] = {"perplexity": scores["perplexity"], **half_widths(scores)}
    before = validation.get("before", {})
    if "perplexity" in before:
        found["base model (no fine-tuning)"] = {"perplexity": before["perplexity"], **half_widths(before)}
    return found


def top_mistakes(errors_path: Path, count: int = 3) -> str:
    """A classifier run's most frequent confusions, each with its most confident example, in one line."""
    from ftune.eval.failures import top_confusions

    if not errors_path.is_file():
        return ""
    errors = [json.loads(line) for line in errors_path.read_text().splitlines() if line.strip()]
    parts = []
    for true, predicted, n in top_confusions(errors, count):
        example = next(e for e in errors if e["true"] == true and e["predicted"] == predicted)["text"]
        example = example if len(example) <= 80 else example[:77] + "..."
        parts.append(f"{true} taken for {predicted}: {n} (e.g. \"{example}\")")
    return "; ".join(parts)


def weights_size_mb(model_dir: Path) -> float | None:
    if not model_dir.is_dir():
        return None
    total = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    return round(total / 2**20, 3)


def loss_curve(log_path: Path) -> list[dict[str, float]]:
    if not log_path.exists():
        return []
    points = []
    for line in log_path.read_text().splitlines():
        entry = json.loads(line)
        if "loss" in entry and "step" in entry:
            points.append({"step": entry["step"], "seconds": entry.get("seconds"), "loss": entry["loss"]})
    return points


def collect_rows(plan: ComparePlan, directory: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    """One row per technique (mean and standard deviation over seeds), then one per baseline;
    loss curves of each technique's first seed."""
    by_method: dict[str, list[dict]] = {}
    for slot in plan.slots:
        record = slot_record(plan, directory, slot)
        if record is not None:
            by_method.setdefault(slot.method, []).append(record)
    rows, curves, baselines = [], {}, {}
    for method in plan.methods:
        records = by_method.get(method)
        if not records:
            rows.append({"method": method, "kind": "technique", "status": "not run"})
            continue
        rows.append(aggregate(method, records))
        for key in ("verdict", "mistakes"):  # the first seed's own, on its held-out examples
            if records[0].get(key):
                rows[-1][key] = records[0][key]
        if records[0].get("curve"):
            curves[method] = records[0]["curve"]
        for record in records:
            if record["status"] == "ok":
                for name, scores in record.get("baselines", {}).items():
                    baselines.setdefault(name, {}).setdefault(record["seed"], scores)
    for name, per_seed in baselines.items():
        rows.append(aggregate(name, list(per_seed.values()), kind="baseline"))
    return rows, curves


def aggregate(method: str, records: list[dict], kind: str = "technique") -> dict[str, Any]:
    ok = [r for r in records if kind == "baseline" or r.get("status") == "ok"]
    row: dict[str, Any] = {"method": method, "kind": kind, "seeds": len(ok)}
    if kind == "technique":
        failed = [r for r in records if r.get("status") != "ok"]
        row["status"] = "ok" if ok else failed[0]["status"]
        row["note"] = "; ".join(dict.fromkeys(r["note"] for r in failed if r.get("note")))[:300]
        if ok and failed:
            row["note"] = f"{len(failed)} of {len(records)} seeds did not finish: " + row["note"]
    else:
        row["status"] = "ok"
    for key in AVERAGED + METRICS + HALF_WIDTHS:
        values = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
        if not values:
            continue
        mean = sum(values) / len(values)
        row[key] = mean
        if key in METRICS and len(values) > 1:
            row[f"{key}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return row
