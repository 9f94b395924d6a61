"""Search hyper-parameters with Optuna: TPE sampling seeded from train.seed, weak trials pruned at
their evaluations (train.evals_per_epoch), the default config measured first (trial 0). Every
trial is a normal run under OUT/trials/ (ftune eval / predict load it; the baselines, the same
for every trial, are measured in trial 0 only). Writes OUT/best.yaml (ready for `ftune train`),
OUT/trials.csv and OUT/report.html (history and importances), and prints the trials table.

The study is kept in OUT/study.db: run the same command again (or --resume OUT) to continue a
search that was stopped or killed. --trials counts finished (complete or pruned) trials in
all; a trial cut short runs again once, with the same parameters; finished ones never.

train.report_to=[mlflow] makes one MLflow parent run named after OUT (params: the base config
and the space as space.<key>; metrics best_<metric>, trials_complete, trials_pruned; files
best.yaml, trials.csv, report.html) and each trial's run its child, tagged ftune.trial.number,
ftune.trial.state and ftune.trial.param.<key>; a resumed search continues the same parent run.
TensorBoard: each trial writes its own events (tensorboard --logdir OUT/trials).

examples:
  ftune tune configs/sst2-minilm-lora.yaml --trials 12
  ftune tune configs/sst2-minilm-lora.yaml space.yaml data.max_rows=2000 --trials 12 --timeout 60
  ftune tune --resume runs/tune-minilm-l6-lora-1a2b3c4d --trials 20   (continue, up to 20 in all)
  ftune tune configs/demo.yaml --trials 40 --storage postgresql://db.example/optuna   (machines share it)

default space (each holds the config's own value):
  train.learning_rate   log-uniform from a tenth to 3x the config's (or the technique's default)
  train.warmup_ratio    uniform 0 .. 0.2
  method.r, method.alpha, method.dropout, method.virtual_tokens, method.reduction_factor
                        where the technique has them (LoRA family, prompt tuning, adapters)

SPACE.yaml replaces or adds dimensions (null removes one), keys as in the config:
  train.learning_rate: {low: 1e-5, high: 1e-3, log: true}
  train.warmup_ratio: {low: 0, high: 0.2}
  method.r: [4, 8, 16]
  method.dropout: null
"""

from __future__ import annotations

HELP = "search hyper-parameters (Optuna): best config, trials table and report"


def add_arguments(parser) -> None:
    parser.add_argument("settings", nargs="*", metavar="[CONFIG.yaml] [SPACE.yaml] [key=value ...]",
                        help="a config, then optionally a search space file, and/or dotted overrides")
    parser.add_argument("--space", metavar="SPACE.yaml", help="the search space file (or give it after the config)")
    parser.add_argument("--trials", type=int, default=20,
                        help="finished (complete or pruned) trials in all, across resumes (default 20)")
    parser.add_argument("--timeout", type=float, metavar="MIN",
                        help="start no new trial after MIN minutes (the running one finishes)")
    parser.add_argument("--out", help="search directory (default <run.dir>/tune-<model>-<technique>-<hash of "
                                      "config and space>: the same command finds it again)")
    parser.add_argument("--resume", metavar="OUT", help="continue the search in OUT with its own config and space")
    parser.add_argument("--storage", metavar="URL",
                        help="an Optuna storage URL (sqlite:///..., postgresql://..., mysql://...) instead of "
                             "OUT/study.db; several machines running the same command share the study")
    parser.add_argument("--study-name", metavar="NAME",
                        help="the study's name in --storage (default: the search directory's name)")


def run(args) -> int:
    import shlex
    import sys

    from ftune.api import tune
    from ftune.errors import FtuneError

    command = "ftune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    options = dict(trials=args.trials, timeout=args.timeout, storage=args.storage, study_name=args.study_name,
                   command=command)
    if args.resume:
        if args.settings or args.out or args.space:
            raise FtuneError(f"--resume {args.resume} continues the search as it started; give no other settings "
                             "or --out")
        result = tune(resume=args.resume, **options)
    else:
        files = [s for s in args.settings if "=" not in s]
        if len(files) > (1 if args.space else 2):
            raise FtuneError(f"expected a config and at most one search space file, got {', '.join(files)}"
                             + (f" and --space {args.space}" if args.space else "") + " (settings are given as key=value)")
        config = files[0] if files else None
        space = args.space or (files[1] if len(files) > 1 else None)
        overrides = [s for s in args.settings if "=" in s]
        result = tune(config, space, directory=args.out, overrides=overrides, **options)
    print("\n" + result.summary())
    return 130 if result.interrupted else 0 if result.finished else 1
