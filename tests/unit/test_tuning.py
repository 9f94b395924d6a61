"""`ftune tune` as a library: search spaces from the registry and SPACE.yaml, a study of tiny runs
with its best config, table and report, pruning, and importances."""

from __future__ import annotations

import base64
import csv
import dataclasses
import re

import pytest

from ftune.comparison.report import PNG_SIGNATURE, check_self_contained
from ftune.errors import ConfigError

from ..conftest import FIXTURES, read_json

TINY = {"train": {"max_steps": 8, "evals_per_epoch": 2, "batch_size": 8}, "eval": {"baselines": False}}


def tiny_config(model_dir, tmp_path, method: str = "lora") -> dict:
    return {"model": {"name": str(model_dir), "max_length": 32}, "method": {"name": method},
            "data": {"train": str(FIXTURES / "reviews.csv")}, **TINY, "run": {"dir": str(tmp_path / "runs")}}


def test_every_technique_gets_a_default_space_from_its_options(tiny_bert_dir, tmp_path):
    """The learning rate and warmup for every registered technique, plus the options its Options
    dataclass has among the known names; the default config is always a point of the space."""
    from ftune.methods import get_method_class, method_names
    from ftune.settings import load_config
    from ftune.tuning.space import OPTION_CHOICES, OPTION_RANGES, default_params, default_space

    for name in method_names():
        config = load_config(tiny_config(tiny_bert_dir, tmp_path, name), check=False)
        space = default_space(config, "classification")
        cls = get_method_class(name)
        options = {f.name for f in dataclasses.fields(cls.Options)} & (set(OPTION_CHOICES) | set(OPTION_RANGES))
        assert set(space) == {"train.learning_rate", "train.warmup_ratio", *(f"method.{o}" for o in options)}, name
        rate = space["train.learning_rate"]
        default_rate = cls.default_learning_rates["classification"]
        assert rate.log and rate.low < default_rate < rate.high, name
        params, outside = default_params(space, config, "classification")
        assert outside == [] and params["train.learning_rate"] == default_rate, name
    lora = default_space(load_config(tiny_config(tiny_bert_dir, tmp_path), check=False), "classification")
    assert lora["method.r"].choices == (4, 8, 16, 32) and lora["method.alpha"].choices == (8.0, 16.0, 32.0, 64.0)
    assert (lora["method.dropout"].low, lora["method.dropout"].high) == (0.0, 0.2)


def test_space_file_replaces_adds_and_removes_dimensions(tiny_bert_dir, tmp_path):
    from ftune.settings import load_config
    from ftune.tuning.space import build_space

    path = tmp_path / "space.yaml"
    path.write_text("train.learning_rate: {low: 1e-5, high: 1e-3, log: true}\n"
                    "method.r: [4, 8]\n"
                    "method.dropout: null\n"
                    "train:\n"
                    "  weight_decay: {low: 0, high: 0.1}\n"
                    "  gradient_accumulation_steps: {low: 1, high: 4}\n")
    config = load_config(tiny_config(tiny_bert_dir, tmp_path))
    space = build_space(config, "classification", path)
    assert list(space) == ["train.learning_rate", "train.warmup_ratio", "method.r", "method.alpha",
                           "train.weight_decay", "train.gradient_accumulation_steps"]
    rate = space["train.learning_rate"]
    assert (rate.low, rate.high, rate.log, rate.integer) == (1e-5, 1e-3, True, False)  # "1e-5" read as a number
    assert space["method.r"].choices == (4, 8)
    assert space["train.gradient_accumulation_steps"].integer and not space["train.weight_decay"].integer


def test_space_file_errors_name_the_key_the_file_and_the_line(tiny_bert_dir, tmp_path):
    from ftune.settings import load_config
    from ftune.tuning.space import build_space

    path = tmp_path / "space.yaml"
    path.write_text("train.learning_rate: {low: 1e-5, high: 1e-3, log: true}\n"
                    "train.lr: [0.1, 0.01]\n"
                    "method.r: [4, 0]\n"
                    "train.warmup_ratio: {low: 0, high: 1.5}\n"
                    "method.dropout: {low: 0, hgh: 0.2}\n"
                    "method.alpah: null\n"
                    "train.weight_decay: 0.1\n"
                    "method.name: [lora, ia3]\n")
    with pytest.raises(ConfigError) as raised:
        build_space(load_config(tiny_config(tiny_bert_dir, tmp_path)), "classification", path)
    problems = raised.value.problems
    assert problems[0] == 'space.yaml:2: train.lr: unknown key. Did you mean "train.learning_rate"?'
    assert problems[1] == "space.yaml:3: method.r = 0: must be at least 1"
    assert problems[2] == "space.yaml:4: train.warmup_ratio = 1.5: must be between 0 and 1"
    assert problems[3].startswith("space.yaml:5: method.dropout: unknown range key(s) 'hgh'")
    assert problems[4].startswith("space.yaml:6: method.alpah: not an option of method 'lora'. "
                                  'Did you mean "method.alpha"?')
    assert problems[5].startswith("space.yaml:7: train.weight_decay = 0.1: give a list of choices")
    assert problems[6].startswith("space.yaml:8: method.name: tune one technique at a time")
    assert len(problems) == 7


def test_a_search_writes_the_best_config_the_trials_table_and_the_report(tiny_bert_dir, tmp_path):
    import ftune
    from ftune.methods import get_method_class
    from ftune.settings import load_config

    lines: list[str] = []
    out = tmp_path / "search"
    result = ftune.tune(tiny_config(tiny_bert_dir, tmp_path), trials=4, directory=out, echo=lines.append)
    assert result.finished == 4 and not result.interrupted
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["number"] for r in rows] == ["0", "1", "2", "3"] and {r["state"] for r in rows} == {"complete"}
    # trial 0 is the default config, measured: the technique's default learning rate and options
    default = rows[0]
    assert default["note"] == "default config"
    assert float(default["train.learning_rate"]) == get_method_class("lora").default_learning_rates["classification"]
    assert (default["method.r"], default["method.alpha"], default["train.warmup_ratio"]) == ("16", "32.0", "0.1")
    assert len({tuple(r[k] for k in result.keys) for r in rows}) == 4  # four different points
    # each trial is a normal run: its own directory, reloadable
    for row in rows:
        metrics = read_json(f"{row['run_dir']}/metrics.json")
        assert float(row["value"]) == pytest.approx(metrics["validation"]["model"]["accuracy"])
        assert row["run_dir"].startswith(str(out / "trials"))
    predicted = list(ftune.predict(rows[2]["run_dir"], ["a warm and funny film"]))
    assert {label for label, _ in predicted[0][1]} == {"negative", "positive"}
    # best.yaml: ready for `ftune train`, with the best trial's parameters
    best = load_config(out / "best.yaml")
    best_row = rows[result.best["number"]]
    assert best.train.learning_rate == float(best_row["train.learning_rate"])
    assert best.method.options["r"] == int(best_row["method.r"]) and best.method.options["dropout"] == float(
        best_row["method.dropout"])
    assert best.run.dir == str(tmp_path / "runs") and best.train.max_steps == 8
    # the page: self-contained, history and evaluations as PNGs, and a sentence on importances
    page = (out / "report.html").read_text()
    assert check_self_contained(page) == []
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 2 and all(base64.b64decode(i).startswith(PNG_SIGNATURE) for i in images)
    assert "importances" in page and "default config" in page
    # one progress line per trial with its number, parameters, value and the time left
    done = [line for line in lines if re.match(r"ftune tune: trial \d/4 \(#\d\) .*: accuracy \d\.\d{4} in ", line)]
    assert len(done) == 4 and "learning_rate=" in done[1] and "left" in done[0] and "left" not in done[-1]
    summary = result.summary()
    assert "best: trial #" in summary and "default config (trial #0)" in summary

    # the same call again with more trials continues the study: earlier trials are kept, not re-run
    more = ftune.tune(tiny_config(tiny_bert_dir, tmp_path), trials=5, directory=out, echo=lines.append)
    again = list(csv.DictReader((out / "trials.csv").open()))
    assert more.finished == 5 and again[:4] == rows and again[4]["number"] == "4"


def test_weak_trials_are_pruned_at_an_evaluation_and_stop_training(tiny_bert_dir, tmp_path):
    """A pruner that finds every trial weak at its first evaluation: training stops there, the
    run is still saved, and the trial counts as finished (pruned), with no best config."""
    import optuna

    import ftune

    out = tmp_path / "search"
    result = ftune.tune(tiny_config(tiny_bert_dir, tmp_path), trials=2, directory=out,
                        pruner=optuna.pruners.ThresholdPruner(lower=2.0), echo=lambda *_: None)
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["pruned", "pruned"] and result.finished == 2
    for row in rows:
        assert row["note"].endswith("pruned at step 3")  # 36 rows / batch 8 = 5 steps an epoch, 2 evaluations
        training = read_json(f"{row['run_dir']}/metrics.json")["training"]
        assert training["optimizer_steps"] == 3 < 8
    assert result.best is None and not (out / "best.yaml").exists()
    assert "no trial has completed yet" in result.summary()


def test_importances_and_plots_of_a_study():
    import optuna

    from ftune.tuning.plots import draw_tuning_plots
    from ftune.tuning.report import param_importances

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + 0.01 * t.suggest_float("y", 0, 1), n_trials=8)
    importances, note = param_importances(study, seed=0)
    assert note == "" and importances["x"] > importances["y"]
    rows = [{"number": t.number, "state": "complete", "value": t.value, "params": t.params, "default": t.number == 0,
             "intermediate": {1: t.value / 2, 2: t.value}} for t in study.trials]
    plots = draw_tuning_plots(rows, "accuracy", True, importances, note, ["x", "y"])
    assert [caption for caption, _, _ in plots] == ["optimisation history", "validation accuracy at each evaluation",
                                                    "parameter importances"]
    assert all(png is not None and png.startswith(PNG_SIGNATURE) for _, png, _ in plots)

    single = optuna.create_study()
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert param_importances(single) == (None, "parameter importances need at least 2 complete trials; this study "
                                               "has 1 (pruned trials do not count: they stopped before their final value)")
