"""MLflow: the resolved config as params, per-step metrics (transformers' MLflowCallback, logging
into ftune's run), the held-out, baseline and training figures, the run directory's files, and
on request the model in MLflow's registry (``train.register_model``).

Where: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns.db`` in the current directory (files
under ``./mlruns``); experiment ``train.experiment``, else ``MLFLOW_EXPERIMENT_NAME``, else
``ftune``. ``ftune compare`` and ``ftune tune`` open one parent run; each technique's (each
trial's) run is its child.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ftune.tracking.base import RECORD, FinalFigures, Tracker, register_tracker
from ftune.tracking.values import config_params

DEFAULT_URI = "sqlite:///mlruns.db"
DEFAULT_EXPERIMENT = "ftune"
PARENT_VARIABLE = "FTUNE_MLFLOW_PARENT_RUN_ID"  # set by `ftune compare` and `ftune tune` for their runs
NOT_LOGGED = ("checkpoints",)  # superseded by the saved model; a finished run deletes them
REGISTERED_MODEL = "ftune_model"  # name of the pyfunc model logged for the registry
FTUNE_CODE = Path(__file__).resolve().parents[2]  # travels with a registered model
PYFUNC_CODE = FTUNE_CODE / "tracking" / "pyfunc_model.py"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def experiment_name(config) -> str:
    return config.train.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def where_to_look(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


@register_tracker("mlflow")
class MLflowTracker(Tracker):
    package = install = "mlflow"
    run_id: str | None = None

    def callbacks(self):
        from transformers.integrations import MLflowCallback

        return [MLflowCallback()]  # finds ftune's run active: logs into it and leaves it open

    def start(self) -> None:
        mlflow, uri, experiment = _connect(self.config)
        client = mlflow.MlflowClient()
        tags = {"ftune.run_dir": str(self.run.path.resolve())}
        earlier = self.recorded().get("run_id") if self.run.resume_from is not None else None
        if earlier and _exists(client, earlier):
            # The interrupted attempt's process is gone: its run ends, and this one says where it left off.
            client.set_terminated(earlier, "KILLED")
            tags["ftune.resumed_from_run_id"] = earlier
        parent = os.environ.get(PARENT_VARIABLE) or None
        active = mlflow.start_run(run_name=self.run.path.name, parent_run_id=parent, tags=tags,
                                  nested=parent is None and mlflow.active_run() is not None)
        self.run_id = active.info.run_id
        _log_params(client, self.run_id, config_params(self.config))
        self.record(run_id=self.run_id, tracking_uri=uri, experiment=experiment.name)
        self.echo(f"ftune: MLflow run {self.run.path.name} in experiment {experiment.name!r} at {uri}; "
                  f"see it with: {where_to_look(uri)}")

    def finish(self, run_dir: Path, figures: FinalFigures) -> None:
        import mlflow
        from mlflow.entities import Metric, RunTag
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

        client = mlflow.MlflowClient()
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, figures.step) for key, value in figures.scalars.items()]
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
            client.log_batch(self.run_id, metrics=chunk)
        tags = [RunTag(key, value[:MAX_TAG_VAL_LENGTH]) for key, value in figures.texts.items()]
        for chunk in _chunks(tags, MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(self.run_id, tags=chunk)
        for entry in sorted(run_dir.iterdir()):
            if entry.name in NOT_LOGGED or entry.name.startswith("."):  # .partial: being written
                continue
            if entry.is_dir():
                client.log_artifacts(self.run_id, str(entry), artifact_path=entry.name)
            else:
                client.log_artifact(self.run_id, str(entry))
        if self.config.train.register_model:
            self._register(run_dir, self.config.train.register_model)
        self._end("FINISHED")

    def fail(self) -> None:
        if self.run_id:
            self._end("FAILED")

    def _end(self, status: str) -> None:
        import mlflow

        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            mlflow.end_run(status)
        else:
            mlflow.MlflowClient().set_terminated(self.run_id, status)
        self.run_id = None

    def _register(self, run_dir: Path, name: str) -> None:
        """MLflow registers only a model (a ``runs:/`` URI must point at an MLmodel file, or name a
        model logged from the run), so the classifier is logged as a pyfunc model answered by
        ``ftune.predict``, with ftune's code, and that model is registered."""
        import mlflow

        info = json.loads((run_dir / "model" / "ftune-model.json").read_text())
        if info.get("task") != "classification":
            self.echo(f"ftune: train.register_model: only classifiers are registered for now (ftune.predict); "
                      f"this {info.get('task')} run's files are in the MLflow run")
            return
        logged = mlflow.pyfunc.log_model(
            name=REGISTERED_MODEL, python_model=str(PYFUNC_CODE),  # models from code: nothing pickled
            artifacts={"model": str(run_dir / "model")}, code_paths=[str(FTUNE_CODE)], pip_requirements=_requirements())
        version = mlflow.register_model(logged.model_uri, name)
        self.echo(f"ftune: registered the model in MLflow as models:/{name}/{version.version}")

    @classmethod
    def open_comparison(cls, config, directory: Path, echo=print):
        return ComparisonRun(config, directory, echo)

    @classmethod
    def open_search(cls, config, space: dict[str, str], directory: Path, echo=print):
        return SearchRun(config, space, directory, echo)


class ParentRun:
    """A parent MLflow run, named after its directory, that ftune runs join as children (through
    ``PARENT_VARIABLE``). Its id is kept in ``<directory>/mlflow.json``: run again on the same
    directory, it continues the same parent run."""

    RECORD = "mlflow.json"
    command = "ftune"  # for the line it prints

    def __init__(self, config, directory: Path, tags: dict[str, str], params: dict[str, str], echo=print):
        mlflow, uri, experiment = _connect(config)
        self.client = mlflow.MlflowClient()
        self.directory = directory
        record = directory / self.RECORD
        earlier = json.loads(record.read_text()).get("run_id") if record.is_file() else None
        if earlier and _exists(self.client, earlier):  # resumed: the same parent, running again
            self.run_id = earlier
            self.client.update_run(earlier, status="RUNNING")
        else:
            self.run_id = self.client.create_run(experiment.experiment_id, run_name=directory.name,
                                                 tags=tags).info.run_id
            _log_params(self.client, self.run_id, params)
            directory.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps({"run_id": self.run_id, "tracking_uri": uri}) + "\n")
        echo(f"{self.command}: MLflow parent run {directory.name} in experiment {experiment.name!r} at {uri}; "
             f"see it with: {where_to_look(uri)}")

    @property
    def environment(self) -> dict[str, str]:
        return {PARENT_VARIABLE: self.run_id}

    def tag_child(self, run_dir: Path, tags: dict[str, str], end_as: str | None = None) -> None:
        """Tag the MLflow run of the ftune run in ``run_dir`` (if it has one); ``end_as``: end it
        so (e.g. KILLED) if it is still running (its process was killed)."""
        from mlflow.entities import RunTag
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

        record = Path(run_dir) / RECORD
        child = json.loads(record.read_text()).get(MLflowTracker.name, {}).get("run_id") if record.is_file() else None
        if not child or not _exists(self.client, child):
            return
        self.client.log_batch(child, tags=[RunTag(k, v[:MAX_TAG_VAL_LENGTH]) for k, v in tags.items()])
        if end_as and self.client.get_run(child).info.status == "RUNNING":
            self.client.set_terminated(child, end_as)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def finish(self, files: dict[str, Path], interrupted: bool = False) -> None:
        for path in files.values():
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "KILLED" if interrupted else "FINISHED")

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")


class ComparisonRun(ParentRun):
    """The parent MLflow run of ``ftune compare``: the shared config as params, the report's
    files when it ends; each technique's run (in its worker process) is a child run."""

    command = "ftune compare"

    def __init__(self, config, directory: Path, echo=print):
        shared = {k: v for k, v in config_params(config).items() if not k.startswith("method.")}
        super().__init__(config, directory, {"ftune.compare_dir": str(directory.resolve())}, shared, echo)


class SearchRun(ParentRun):
    """The parent MLflow run of ``ftune tune``: the base config and the search space
    (``space.<key>``) as params; the best value, the trial counts and the search's files at the
    end; each trial's run is a child run."""

    command = "ftune tune"

    def __init__(self, config, space: dict[str, str], directory: Path, echo=print):
        params = {**config_params(config), **{f"space.{key}": text for key, text in space.items()}}
        super().__init__(config, directory, {"ftune.tune_dir": str(directory.resolve())}, params, echo)


def _connect(config):
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return mlflow, uri, mlflow.set_experiment(experiment_name(config))


def _exists(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def _log_params(client, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

    entries = [Param(key, value[:MAX_PARAM_VAL_LENGTH]) for key, value in params.items()]
    for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=chunk)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _requirements() -> list[str]:
    """What the registered model needs installed (ftune's code travels with it): ftune's own
    dependencies and torch."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = [r for r in requires("ftune") or [] if "extra ==" not in r]
    except PackageNotFoundError:
        declared = ["transformers", "peft", "safetensors", "scikit-learn", "pyyaml"]
    return [*declared, "torch"]
