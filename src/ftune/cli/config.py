"""Print the resolved configuration (defaults <- YAML file <- overrides), each key documented.

examples:
  ftune config
  ftune config configs/agnews-minilm-lora.yaml method.r=8
"""

from __future__ import annotations

HELP = "print the resolved configuration with every default documented"


def add_arguments(parser) -> None:
    parser.add_argument("settings", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")


def run(args) -> int:
    from ftune.cli.main import split_config_and_overrides
    from ftune.settings import load_config, render_config

    path, overrides = split_config_and_overrides(args.settings)
    print(render_config(load_config(path, overrides)), end="")
    return 0
