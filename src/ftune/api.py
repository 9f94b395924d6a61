"""ftune as a Python library: the functions the command line calls and prints.

    import ftune

    run = ftune.train({"model": "minilm-l6", "data": {"train": "reviews.csv"}, "train": {"max_minutes": 5}})
    print(run.metrics["validation"]["model"]["accuracy"], run.run_dir)
    scores = ftune.evaluate(run.run_dir, "held_out.csv")
    for text, ranked in ftune.predict(run.run_dir, ["a warm, funny film"]):
        print(text, ranked[0])
    report = ftune.compare({"data": {"train": "reviews.csv"}}, methods=["lora", "full"])
    search = ftune.tune("configs/sst2-minilm-lora.yaml", trials=12)  # best.yaml, trials.csv, report.html
    shipped = ftune.export(run.run_dir, "onnx")  # re-checked in ONNX Runtime on the held-out split

A config is a ``Config``, a dict laid out as the YAML file would be, or a YAML path;
``overrides`` are dotted ``key=value`` strings, as on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from ftune.config import Config
from ftune.training.loop import TrainedRun

ConfigSource = Config | dict[str, Any] | str | Path | None


def resolve_config(config: ConfigSource = None, overrides: Sequence[str] = ()) -> Config:
    """A checked ``Config`` from any of the accepted sources; raises ``ConfigError`` naming each problem."""
    from ftune.settings import config_to_dict, load_config

    if isinstance(config, Config):
        if not overrides:
            return config
        config = config_to_dict(config)
    return load_config(config, list(overrides))


def train(config: ConfigSource = None, overrides: Sequence[str] = (), echo=print,
          resume: str | Path | None = None) -> TrainedRun:
    """Fine-tune with the objective the config and data call for (classification, SFT or DPO).
    Returns the saved run: its directory and the metrics in its ``metrics.json``. ``echo``
    receives progress lines (pass ``lambda *_: None`` for silence). ``resume``: an interrupted
    run's directory, continued from its last checkpoint with its own config (give no other)."""
    from ftune.recipes.dispatch import train_for_objective

    if resume is not None:
        from ftune.errors import FtuneError
        from ftune.training.checkpoints import resume_run

        if config is not None or overrides:
            raise FtuneError("resume: a resumed run keeps the settings it started with; give no config or overrides")
        config, run = resume_run(resume)
        return train_for_objective(config, echo, run)
    return train_for_objective(resolve_config(config, overrides), echo)


def evaluate(run: str | Path, data: str | Path, overrides: Sequence[str] = (), batch_size: int = 32,
             errors: int = 0) -> dict[str, Any]:
    """Scores of a finished run (or, for generative data, a model name or directory) on a file:
    accuracy, F1 and the confusion matrix for a classifier; loss and perplexity for SFT data;
    preference accuracy and reward margin for preference pairs; each headline figure with a
    95% bootstrap interval (``<metric>_ci``). ``errors=N`` adds the N worst examples under
    ``errors``: mistakes (most confident first), least likely replies, most mis-preferred pairs.
    ``overrides`` are ``data.*`` settings (columns, format)."""
    from ftune.eval.run_eval import evaluate_generative, evaluate_run_on_file, is_classification_run

    if is_classification_run(run):
        return evaluate_run_on_file(run, data, list(overrides), batch_size=batch_size, errors=errors)
    data_format = next((o.split("=", 1)[1] for o in overrides if o.startswith("data.format=")), "auto")
    return evaluate_generative(str(run), data, data_format=data_format, errors=errors)


def predict(run: str | Path, texts: Sequence[str] | None = None, path: str | Path | None = None,
            overrides: Sequence[str] = ()) -> Iterator[tuple[str, list[tuple[str, float]]]]:
    """For each text (given, or read from the file at ``path``): (text, [(label, probability),
    ...] most likely first), from a finished classification run."""
    from ftune.eval.run_eval import predict_run

    return predict_run(run, list(texts) if texts is not None else None, str(path) if path else None, list(overrides))


def compare(config: ConfigSource = None, methods: Sequence[str] | str = "all", seeds: int = 1,
            directory: str | Path | None = None, overrides: Sequence[str] = (), *, resume: str | Path | None = None,
            command: str = "", echo=print) -> dict[str, Path]:
    """Train each technique on the same data and split (each in a process of its own), and
    write the side-by-side report. ``resume`` continues a comparison directory where it
    stopped, as planned. Returns the report's files: ``{"md": ..., "json": ..., ...}``."""
    import time

    from ftune.comparison.plan import ComparePlan, build_plan, parse_methods
    from ftune.comparison.runner import run_comparison
    from ftune.errors import FtuneError

    if resume is not None:
        out = Path(resume)
        if not (out / "plan.json").exists():
            raise FtuneError(f"--resume {out}: no plan.json there; is it a compare directory?")
        plan = ComparePlan.from_file(out / "plan.json")
    else:
        resolved = resolve_config(config, overrides)
        names = parse_methods(methods if isinstance(methods, str) else ",".join(methods))
        plan = build_plan(resolved, names, seeds)
        out = Path(directory or Path(resolved.run.dir) / f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    echo(f"ftune compare: {len(plan.methods)} techniques x {len(plan.seeds)} seed(s) on {plan.config.model.name}; "
         f"directory {out}")
    return run_comparison(plan, out, command, echo=echo)


def tune(config: ConfigSource = None, space: str | Path | None = None, trials: int = 20, timeout: float | None = None,
         directory: str | Path | None = None, overrides: Sequence[str] = (), *, resume: str | Path | None = None,
         storage: str | None = None, study_name: str | None = None, pruner=None, command: str = "", echo=print):
    """Search hyper-parameters with Optuna (TPE, seeded from ``train.seed``): ``trials`` trials,
    each a normal run under ``<directory>/trials/``, reported at every evaluation and pruned when
    weak; the default config runs first, as trial 0. ``space`` is a SPACE.yaml that changes the
    technique's default space. The study is kept in ``<directory>/study.db`` (or ``storage``, any
    Optuna storage URL), so calling again with the same arguments, or ``resume=directory``,
    continues it: ``trials`` counts finished trials across calls, a trial cut short runs again
    once, finished ones never. ``timeout``: minutes after which no new trial starts. Writes
    best.yaml, trials.csv and report.html; returns a ``TuneResult`` (``.summary()`` prints it)."""
    from ftune.errors import FtuneError
    from ftune.tuning.study import PLAN_FILE, TunePlan, default_directory, plan_search, run_search

    if resume is not None:
        out = Path(resume)
        if config is not None or overrides or space is not None or directory is not None:
            raise FtuneError(f"--resume {out}: a resumed search keeps the config and space it started with; "
                             "give no config, space, overrides or directory")
        if not (out / PLAN_FILE).is_file():
            raise FtuneError(f"--resume {out}: no {PLAN_FILE} there; is it a search directory (ftune tune --out)?")
        plan = TunePlan.from_file(out / PLAN_FILE)
        plan.storage, plan.study_name = storage or plan.storage, study_name or plan.study_name
    else:
        plan = plan_search(resolve_config(config, overrides), space, storage, study_name)
        out = Path(directory) if directory is not None else default_directory(plan)
        if storage and not study_name:  # a shared storage holds many studies: this one's name is its directory's
            plan.study_name = out.name
    return run_search(plan, out, trials, timeout, pruner=pruner, command=command, echo=echo)


def export(run: str | Path, to: str, out: str | Path | None = None, *, dtype: str = "fp32", quant: str = "f16",
           int8: bool = False, max_drop: float | None = None, examples: int | None = None, check: bool = True,
           echo=print):
    """Ship a finished run ``to`` a target (``merged``, ``adapter``, ``gguf``, ``onnx``, ...):
    the artifact in ``out`` (default ``RUN/exports/<target>``), re-loaded in its own runtime and
    scored on the run's held-out split beside the PyTorch run, unless ``check=False``. Returns
    an ``ExportResult``: its directory, the ``export.json`` report, and whether the score
    stayed within ``max_drop`` (accuracy points, or relative perplexity)."""
    from ftune.export.run_export import export_run
    from ftune.export.target import ExportOptions

    return export_run(run, to, out, ExportOptions(dtype=dtype, quant=quant, int8=int8), max_drop=max_drop,
                      examples=examples, check=check, echo=echo)


def serving_app(sources: Sequence[str | Path], *, api_key: str | None = None, max_tokens: int = 2048, max_batch: int = 8,
                max_queue: int = 64, allow_updates: bool = False, echo=print):
    """The OpenAI-compatible FastAPI application for ``sources`` (run directories, built-in model
    names, exported model directories), each loaded now; serve it with uvicorn."""
    from ftune.serving.app import build_app
    from ftune.serving.served import ServedModels

    served = ServedModels(max_batch=max_batch)
    for source in sources:
        served.add(str(source), echo=echo)
    return build_app(served, api_key=api_key, max_tokens_cap=max_tokens, max_waiting=max_queue,
                     allow_updates=allow_updates)


def serve(sources: Sequence[str | Path], *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_tokens: int = 2048, max_batch: int = 8, max_queue: int = 64, allow_updates: bool = False,
          echo=print) -> None:
    """Load ``sources`` and serve them until interrupted (``ftune serve``)."""
    import uvicorn

    app = serving_app(sources, api_key=api_key, max_tokens=max_tokens, max_batch=max_batch, max_queue=max_queue,
                      allow_updates=allow_updates, echo=echo)
    echo(f"ftune serve: http://{host}:{port}/v1")
    uvicorn.run(app, host=host, port=port, log_level="warning")
