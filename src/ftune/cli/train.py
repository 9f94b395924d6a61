"""Fine-tune a model. With no arguments: the built-in MiniLM encoder with LoRA on ftune's demo
sentiment data.

examples:
  ftune train
  ftune train configs/sst2-minilm-lora.yaml train.max_minutes=10
  ftune train model=smollm2-135m method=lora method.r=16 data.train=reviews.csv
"""

from __future__ import annotations

HELP = "fine-tune a model on your data"


def add_arguments(parser) -> None:
    parser.add_argument("settings", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                        help="a YAML config and/or dotted overrides (see `ftune config`)")


def run(args) -> int:
    from ftune.cli.main import split_config_and_overrides
    from ftune.config import load_config

    path, overrides = split_config_and_overrides(args.settings)
    config = load_config(path, overrides)  # every config problem surfaces here, before any import of torch

    from ftune.train.classify import train_classifier
    from ftune.train.model_card import results_table

    result = train_classifier(config)
    for split in ("validation", "test"):
        if split in result.metrics:
            print(f"\n{split} split ({result.metrics[split]['model']['n']:,} rows):")
            print(results_table(result.metrics[split], f"{config.model.name} + {config.method.name}"))
    training = result.metrics["training"]
    print(f"\ntrained {training['trainable_parameters']:,} parameters ({training['trainable_share']:.2%}) "
          f"for {training['optimizer_steps']} steps in {training['seconds']:.0f} s")
    print(f"saved run: {result.run_dir}")
    return 0
