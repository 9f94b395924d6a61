"""Fine-tune a model. With no arguments: the built-in MiniLM encoder with LoRA on ftune's demo
sentiment data. The objective follows the data: labeled rows -> classification; instructions,
chats, prompt/completion pairs or plain text -> SFT (objective=sft).

examples:
  ftune train
  ftune train configs/sst2-minilm-lora.yaml train.max_minutes=10
  ftune train model=smollm2-135m method=lora method.r=16 data.train=reviews.csv
  ftune train model=smollm2-135m data.train=alpaca.jsonl train.max_minutes=20
  ftune train --resume runs/20261130-120408-smollm2-135m-lora-sft   (after a crash: from its last checkpoint)
  ftune train configs/sst2-minilm-lora.yaml train.processes=2   (DDP over 2 processes; or: accelerate launch -m ftune train ...)
  ftune train --resume runs/20261130-120408-minilm-l6-lora   (a run over 2 processes resumes over 2 again)
"""

from __future__ import annotations

HELP = "fine-tune a model on your data"


def add_arguments(parser) -> None:
    parser.add_argument("settings", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                        help="a YAML config and/or dotted overrides (see `ftune config`)")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue an interrupted run from its last checkpoint (train.checkpoint_every), "
                             "with the settings it started with, over as many processes as it had")


def run(args) -> int:
    from ftune.api import train
    from ftune.cli.main import split_config_and_overrides
    from ftune.settings import load_config

    if args.resume:
        if args.settings:
            from ftune.errors import FtuneError

            raise FtuneError(f"--resume {args.resume}: a resumed run keeps the settings it started with; "
                             f"drop {' '.join(args.settings)}")
        result = train(resume=args.resume)
        config = load_config(str(result.run_dir / "config.yaml"), [])
    else:
        path, overrides = split_config_and_overrides(args.settings)
        config = load_config(path, overrides)  # every config problem surfaces here, before any import of torch
        result = train(config)
    from ftune.recipes.results import result_tables, training_summary
    from ftune.training.distributed import current_world

    if not current_world().main or (config.train.processes > 1 and not current_world().distributed):
        return 0  # one of several processes, or the command that launched them: the main process reported

    for table in result_tables(result.objective, config, result.metrics):
        print("\n" + table.text())
    print("\n" + "\n".join(training_summary(result.metrics["training"])))
    verdict = result.metrics.get("verdict")
    if verdict:
        print(f"\nverdict ({verdict['split']} split): {verdict['text']}")
    print(f"saved run: {result.run_dir}")
    return 0
