"""Experiment tracking (``train.report_to``) on a tiny random encoder: what MLflow and
TensorBoard hold afterwards, read back with their own readers, against the run's own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftune.errors import ConfigError
from ftune.settings import load_config
from tests.conftest import FIXTURES

QUIET = lambda *a, **k: None  # noqa: E731


def settings(model_dir, runs, **train):
    return {"model": {"name": str(model_dir), "max_length": 32},
            "data": {"train": str(FIXTURES / "reviews.csv")},
            "train": {"max_steps": 6, "batch_size": 8, "eval_batch_size": 16, "evals_per_epoch": 2,
                      "learning_rate": 1e-3, "checkpoint_every": "off", **train},
            "eval": {"baselines": ["majority", "tfidf"]},
            "run": {"dir": str(runs)}}


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A fresh sqlite store in tmp_path; MLflow's files land in tmp_path/mlruns."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'tracking.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    return mlflow


def test_mlflow_and_tensorboard_record_the_run_its_steps_scores_files_and_model(tmp_path, tiny_bert_dir, mlflow_store):
    import ftune

    mlflow = mlflow_store
    lines: list[str] = []
    run = ftune.train(settings(tiny_bert_dir, tmp_path / "runs", report_to=["mlflow", "tensorboard"],
                               register_model="reviews"), echo=lines.append)
    assert any("mlflow ui --backend-store-uri sqlite:///" in line for line in lines)
    assert any("tensorboard --logdir" in line for line in lines)
    log = [json.loads(line) for line in (run.run_dir / "log.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in log if "loss" in r}
    assert list(losses) == [1, 2, 3, 4, 5, 6]

    (recorded,) = mlflow.search_runs(experiment_names=["ftune"], output_format="list")
    assert recorded.info.run_name == run.run_dir.name and recorded.info.status == "FINISHED"
    params, metrics = recorded.data.params, recorded.data.metrics
    # the resolved config, as dotted keys, beside transformers' own arguments
    assert params["train.learning_rate"] == "0.001" and params["method.name"] == "lora"
    assert params["method.r"] == str(load_config(run.run_dir / "config.yaml", check=False).method.options["r"])
    assert json.loads(params["train.report_to"]) == ["mlflow", "tensorboard"]
    # per step: the very losses ftune logged, and an evaluation at each half epoch
    client = mlflow.MlflowClient()
    history = client.get_metric_history(recorded.info.run_id, "loss")
    assert {m.step: m.value for m in history} == pytest.approx(losses) and len(history) == 6
    assert sorted(m.step for m in client.get_metric_history(recorded.info.run_id, "eval_accuracy")) == [3, 6]
    # the finished run's scores: the model's and the baselines', as in metrics.json
    scores = run.metrics["validation"]
    assert metrics["validation.accuracy"] == pytest.approx(scores["model"]["accuracy"])
    assert metrics["validation.f1"] == pytest.approx(scores["model"]["f1"])
    assert metrics["validation.baseline.majority.accuracy"] == pytest.approx(scores["majority"]["accuracy"])
    assert metrics["validation.baseline.tfidf_logreg.f1"] == pytest.approx(scores["tfidf_logreg"]["f1"])
    assert metrics["validation.accuracy_ci_low"] == pytest.approx(scores["model"]["accuracy_ci"][0])
    assert metrics["training.optimizer_steps"] == 6
    assert recorded.data.tags["verdict.text"] == run.metrics["verdict"]["text"]
    # the run directory's files, the saved model among them
    artifacts = {a.path for a in client.list_artifacts(recorded.info.run_id)}
    assert {"metrics.json", "config.yaml", "log.jsonl", "model", "tensorboard"} <= artifacts
    assert {"model/ftune-model.json", "model/adapter_model.safetensors"} <= {
        a.path for a in client.list_artifacts(recorded.info.run_id, "model")}
    copied = mlflow.artifacts.download_artifacts(run_id=recorded.info.run_id, artifact_path="metrics.json",
                                                 dst_path=str(tmp_path / "download"))
    assert json.loads(open(copied).read()) == json.loads((run.run_dir / "metrics.json").read_text())
    # registered: the model from the registry answers as ftune.predict does
    registered = mlflow.pyfunc.load_model("models:/reviews/1")
    texts = ["a warm and funny film", "the plot goes nowhere"]
    expected = [dict(ranked) for _, ranked in ftune.predict(run.run_dir, texts)]
    answered = registered.predict(texts)
    assert [set(a) for a in answered] == [{"negative", "positive"}] * 2
    assert [a["positive"] for a in answered] == pytest.approx([e["positive"] for e in expected])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.run_dir / "tensorboard"))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("train/loss")} == pytest.approx(losses, rel=1e-6)
    assert [e.step for e in events.Scalars("eval/accuracy")] == [3, 6]
    assert [e.step for e in events.Scalars("train/learning_rate")] == [1, 2, 3, 4, 5, 6]
    (final,) = events.Scalars("final/validation.accuracy")
    assert (final.step, final.value) == (6, pytest.approx(scores["model"]["accuracy"]))
    (baseline,) = events.Scalars("final/validation.baseline.tfidf_logreg.accuracy")
    assert baseline.value == pytest.approx(scores["tfidf_logreg"]["accuracy"])


def test_a_run_that_raises_after_training_is_recorded_as_failed(tmp_path, tiny_bert_dir, mlflow_store, monkeypatch):
    import ftune
    from ftune.training import loop

    real = loop.run_training

    def train_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(loop, "run_training", train_then_fail)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        ftune.train(settings(tiny_bert_dir, tmp_path / "runs", max_steps=2, report_to=["mlflow"],
                             experiment="failing"), echo=QUIET)
    # ``ftune.train`` ends the record as failed as the error passes (not only at the process's exit)
    (started,) = mlflow_store.search_runs(experiment_names=["failing"], output_format="list")
    ended = mlflow_store.MlflowClient().get_run(started.info.run_id)
    assert ended.info.status == "FAILED" and mlflow_store.active_run() is None
    assert [m.step for m in mlflow_store.MlflowClient().get_metric_history(started.info.run_id, "loss")] == [1, 2]


def test_a_tracker_that_cannot_start_stops_the_run_before_its_first_step(tmp_path, tiny_bert_dir, monkeypatch):
    import ftune
    from ftune.errors import FtuneError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nowhere://tracking")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FtuneError, match=r"train.report_to: mlflow could not start recording the run \(.*nowhere"):
        ftune.train(settings(tiny_bert_dir, tmp_path / "runs", report_to=["tensorboard", "mlflow"]), echo=QUIET)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "log.jsonl").exists()  # not one step trained unrecorded


def test_compare_makes_one_parent_run_and_each_technique_a_child(tmp_path, tiny_bert_dir, mlflow_store):
    import ftune

    files = ftune.compare(settings(tiny_bert_dir, tmp_path / "runs", max_steps=2, report_to=["mlflow"],
                                   experiment="compare") | {"eval": {"baselines": False}},
                          methods=["lora"], directory=tmp_path / "cmp", echo=QUIET)
    runs = mlflow_store.search_runs(experiment_names=["compare"], output_format="list")
    (parent,) = [r for r in runs if r.info.run_name == "cmp"]
    (child,) = [r for r in runs if r is not parent]
    assert parent.info.status == child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.run_name.endswith("-lora") and child.data.params["method.name"] == "lora"
    slot_metrics = json.loads(next((tmp_path / "cmp" / "lora-seed42").glob("*-lora/metrics.json")).read_text())
    assert child.data.metrics["validation.accuracy"] == pytest.approx(slot_metrics["validation"]["model"]["accuracy"])
    # the shared settings and the comparison's report belong to the parent
    assert parent.data.params["train.max_steps"] == "2" and "method.name" not in parent.data.params
    report = {a.path for a in mlflow_store.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {files["csv"].name, files["md"].name} <= report


def test_tune_makes_one_parent_run_that_each_trial_joins_and_a_resumed_search_continues(
        tmp_path, tiny_bert_dir, mlflow_store):
    import csv

    import optuna

    import ftune

    class PruneTrialTwo(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number == 2

    config = settings(tiny_bert_dir, tmp_path / "runs", max_steps=2, report_to=["mlflow"], experiment="tune")
    out = tmp_path / "search"
    ftune.tune(config | {"eval": {"baselines": False}}, trials=3, directory=out, pruner=PruneTrialTwo(), echo=QUIET)
    client = mlflow_store.MlflowClient()

    def runs():
        found = mlflow_store.search_runs(experiment_names=["tune"], output_format="list")
        parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
        children = sorted((r for r in found if r not in parents), key=lambda r: int(r.data.tags["ftune.trial.number"]))
        return parents, children, {r["number"]: r for r in csv.DictReader((out / "trials.csv").open())}

    (parent,), children, rows = runs()
    assert parent.info.run_name == "search" and parent.info.status == "FINISHED"
    assert [c.data.tags["mlflow.parentRunId"] for c in children] == [parent.info.run_id] * 3
    assert [c.data.tags["ftune.trial.state"] for c in children] == ["complete", "complete", "pruned"]
    for child in children:  # a child is the trial's own run, with the trial's sampled settings
        row = rows[child.data.tags["ftune.trial.number"]]
        assert child.info.run_name == Path(row["run_dir"]).name
        for key in ("train.learning_rate", "method.r"):
            assert float(child.data.params[key]) == float(child.data.tags[f"ftune.trial.param.{key}"]) == float(row[key])
    # the parent: the base config and the space as params, the search's outcome and files
    assert parent.data.params["train.max_steps"] == "2" and parent.data.params["method.name"] == "lora"
    assert parent.data.params["space.train.learning_rate"].startswith("log-uniform ")
    best = max(float(r["value"]) for r in rows.values() if r["state"] == "complete")
    assert parent.data.metrics == {"best_accuracy": pytest.approx(best), "trials_complete": 2, "trials_pruned": 1}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"best.yaml", "trials.csv", "report.html"}

    # resumed: the same parent run, one more child
    ftune.tune(resume=out, trials=4, pruner=PruneTrialTwo(), echo=QUIET)
    (again,), children, rows = runs()
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert [c.data.tags["mlflow.parentRunId"] for c in children] == [parent.info.run_id] * 4
    assert children[3].data.tags["ftune.trial.state"] == "complete" and again.data.metrics["trials_complete"] == 3
    history = client.get_metric_history(parent.info.run_id, "trials_complete")
    assert [(m.step, m.value) for m in history] == [(1, 1), (2, 2), (3, 2), (4, 3)]  # a point as each trial ended


def test_unknown_trackers_and_missing_packages_fail_at_config_load_naming_the_key():
    import importlib.util

    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.report_to=[tensorbord, mlflow]"])
    message = str(error.value)
    assert "train.report_to" in message and "unknown tracker 'tensorbord'" in message
    assert "choose from mlflow, tensorboard, wandb" in message and 'Did you mean "tensorboard"?' in message
    with pytest.raises(ConfigError, match="train.register_model = 'reviews': registers in MLflow; add mlflow"):
        load_config(None, ["train.register_model=reviews", "train.report_to=tensorboard"])
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ConfigError, match=r"train.report_to = \['wandb'\]: .*pip install wandb"):
            load_config(None, ["train.report_to=wandb"])
    assert load_config(None, ["train.report_to=mlflow"]).train.report_to == ["mlflow"]
    assert load_config(None, ["train.report_to=none"]).train.report_to == ["none"]


def test_only_the_main_process_of_a_distributed_run_tracks(tmp_path, monkeypatch):
    from ftune.runs.run_dir import RunDir
    from ftune.tracking import open_tracking

    config = load_config(None, ["train.report_to=[mlflow,tensorboard]"])
    run = RunDir.reserve(tmp_path, "run")
    monkeypatch.setenv("RANK", "1")
    other = open_tracking(config, run, QUIET)
    assert other.trackers == [] and other.callbacks == []
    monkeypatch.setenv("RANK", "0")
    main = open_tracking(config, run, QUIET)
    assert [t.name for t in main.trackers] == ["mlflow", "tensorboard"]
    assert [type(c).__name__ for c in main.callbacks] == ["StartTracking", "MLflowCallback", "TensorBoardCallback"]
    main.fail()  # never started: nothing to end


def test_metric_names_for_sft_dpo_and_labeled_chat_runs():
    from ftune.tracking.values import final_figures

    sft = {"validation": {"before": {"loss": 2.0, "perplexity": 7.4, "perplexity_ci": [7.0, 7.9]},
                          "few_shot": {"loss": 1.9, "perplexity": 6.7},
                          "after": {"loss": 1.5, "perplexity": 4.5, "example_losses": [1.0, 2.0]},
                          "labels": {"zero_shot": {"accuracy": 0.5},
                                     "fine_tuned": {"accuracy": 0.9, "confusion_matrix": {"labels": ["a", "b"]}}}},
           "training": {"optimizer_steps": 12, "device": "cpu", "interrupted": False, "resumed_from_step": None},
           "verdict": {"text": "fine-tuning helps", "difference_points": 12.5}}
    figures = final_figures(sft)
    assert figures.step == 12
    assert figures.scalars == {
        "validation.baseline.before.loss": 2.0, "validation.baseline.before.perplexity": 7.4,
        "validation.baseline.before.perplexity_ci_low": 7.0, "validation.baseline.before.perplexity_ci_high": 7.9,
        "validation.baseline.few_shot.loss": 1.9, "validation.baseline.few_shot.perplexity": 6.7,
        "validation.loss": 1.5, "validation.perplexity": 4.5,
        "validation.labels.baseline.zero_shot.accuracy": 0.5, "validation.labels.accuracy": 0.9,
        "training.optimizer_steps": 12, "verdict.difference_points": 12.5}
    assert figures.texts == {"training.device": "cpu", "training.interrupted": "false",
                             "verdict.text": "fine-tuning helps"}
    dpo = final_figures({"validation": {"before": {"preference_accuracy": 0.5},
                                        "after": {"preference_accuracy": 0.8}},
                         "training": {"optimizer_steps": 3}})
    assert dpo.scalars == {"validation.baseline.before.preference_accuracy": 0.5,
                           "validation.preference_accuracy": 0.8, "training.optimizer_steps": 3}
