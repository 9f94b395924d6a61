"""Measure techniques side by side on your data: each on the same model, data, split, budget
and seed, each in its own process. Writes results.csv / .json / .md and report.html (plots).

examples:
  ftune compare configs/sst2-minilm-lora.yaml methods=all train.max_minutes=3
  ftune compare model=smollm2-135m data.train=reviews.csv methods=lora,qlora,ia3 train.max_steps=200
  ftune compare configs/demo.yaml methods=lora,full --seeds 3
  ftune compare --resume runs/compare-20261125-160000     (continue; finished techniques are kept)
"""

from __future__ import annotations

HELP = "compare fine-tuning techniques side by side on your data"


def add_arguments(parser) -> None:
    parser.add_argument("settings", nargs="*", metavar="[CONFIG.yaml] [methods=a,b,...] [key=value ...]",
                        help="a config and/or dotted overrides; methods=all or a comma-separated list "
                             "(default: all)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat each technique with N seeds (mean ± std)")
    parser.add_argument("--out", help="compare directory (default runs/compare-<timestamp>)")
    parser.add_argument("--resume", metavar="DIR", help="continue an interrupted comparison in DIR")


def run(args) -> int:
    import shlex
    import sys
    from pathlib import Path

    from ftune.api import compare
    from ftune.cli.main import split_config_and_overrides
    from ftune.errors import FtuneError

    command = "ftune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.resume:
        if args.settings:
            raise FtuneError("--resume continues the comparison as planned; give no other settings")
        paths = compare(resume=args.resume, command=command)
    else:
        methods = next((s.split("=", 1)[1] for s in args.settings if s.startswith("methods=")), "all")
        path, overrides = split_config_and_overrides([s for s in args.settings if not s.startswith("methods=")])
        paths = compare(path, methods, args.seeds, args.out, overrides, command=command)
    print(Path(paths["md"]).read_text() if "md" in paths else "")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
