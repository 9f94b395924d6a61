"""``ftune`` command line: parse, call the library, print. Heavy imports happen per command."""

from __future__ import annotations

import argparse
import errno
import sys

from ftune.errors import FtuneError

COMMANDS = {
    "train": "ftune.cli.train",
    "eval": "ftune.cli.evaluate",
    "predict": "ftune.cli.predict",
    "generate": "ftune.cli.generate",
    "chat": "ftune.cli.chat",
    "data": "ftune.cli.data",
    "compare": "ftune.cli.compare",
    "tune": "ftune.cli.tune",
    "export": "ftune.cli.export",
    "serve": "ftune.cli.serve",
    "config": "ftune.cli.config",
}


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="ftune",
        description="Fine-tune, evaluate and ship language models on your own data.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    # Deprecation notices from inside transformers / torch are for library authors, not users.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _report_unfinished_runs()
        return args.run(args) or 0
    except FtuneError as error:
        print(f"ftune: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftune: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno not in _WRITE_FAILURES:
            raise
        # a full disk or a read-only place met while writing: say which file, without a traceback
        where = f" {error.filename}" if error.filename else ""
        print(f"ftune: cannot write{where}: {error.strerror or error}", file=sys.stderr)
        return 2


_WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _report_unfinished_runs() -> None:
    """A run killed by the system (out of memory) left no message; say so now, once."""
    from ftune.runs.unfinished import report_unfinished_runs
    from ftune.training.distributed import current_world

    if not current_world().main:  # one of several processes: the main one says it
        return
    report_unfinished_runs("runs", echo=lambda line: print(line, file=sys.stderr))


def split_config_and_overrides(items: list[str]) -> tuple[str | None, list[str]]:
    """``[my.yaml] [key=value ...]``: the config file is the one argument without '='."""
    files = [i for i in items if "=" not in i]
    if len(files) > 1:
        raise FtuneError(f"expected at most one config file, got {', '.join(files)} "
                         "(settings are given as key=value)")
    return (files[0] if files else None), [i for i in items if "=" in i]


if __name__ == "__main__":
    sys.exit(main())
