"""Look at generative data before spending compute on it.

  ftune data inspect [CONFIG] [key=value ...] [-n 3]   rendered samples, trained tokens marked
  ftune data stats   [CONFIG] [key=value ...]          rows, token lengths, truncation, duplicates
  ftune data convert IN OUT [--to chat]                to OpenAI chat JSONL (or back)
"""

from __future__ import annotations

HELP = "inspect, describe and convert generative data"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="inspect|stats|convert")
    sub.required = True
    inspect = sub.add_parser("inspect", help="print rendered samples with the trained tokens marked")
    inspect.add_argument("settings", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")
    inspect.add_argument("-n", "--samples", type=int, default=3)
    inspect.add_argument("--no-color", action="store_true", help="mark trained text with [[ ]] instead of colour")
    stats = sub.add_parser("stats", help="rows, token-length distribution, truncation, duplicates")
    stats.add_argument("settings", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")
    stats.add_argument("--json", action="store_true")
    convert = sub.add_parser("convert", help="convert between data formats (default: to OpenAI chat JSONL)")
    convert.add_argument("source")
    convert.add_argument("target", help="output .jsonl (or .jsonl.gz); must not exist unless --force")
    convert.add_argument("--force", action="store_true", help="replace an existing output file")
    convert.add_argument("--to", default="chat", help="target format (chat, alpaca, prompt_completion, preference, ...)")
    convert.add_argument("--from", dest="source_format", default="auto", help="source format (default: detect)")


def run(args) -> int:
    return {"inspect": _inspect, "stats": _stats, "convert": _convert}[args.data_command](args)


def _load(args):
    from ftune.cli.main import split_config_and_overrides
    from ftune.settings import load_config
    from ftune.config.schema import DEFAULT_MAX_LENGTH
    from ftune.errors import FtuneError

    path, overrides = split_config_and_overrides(args.settings)
    config = load_config(path, overrides)
    if not config.data.train:
        raise FtuneError("give the data: data.train=FILE (or a config file that sets it)")
    from ftune.data.generative import load_generative_file
    from ftune.data.templates import resolve_template
    from ftune.models.load import load_tokenizer, resolve_model_dir

    examples = load_generative_file(config.data.train, format=config.data.format,
                                    max_bad_fraction=config.data.max_bad_fraction)
    tokenizer = load_tokenizer(resolve_model_dir(config.model.name), config.model.trust_remote_code)
    template = resolve_template(config.data.template, tokenizer)
    max_length = config.model.max_length or DEFAULT_MAX_LENGTH["sft"]
    return config, examples, tokenizer, template, max_length


def _inspect(args) -> int:
    import sys

    from ftune.data.masking import render_inspection
    from ftune.data.encode import encode_example

    config, examples, tokenizer, template, max_length = _load(args)
    color = not args.no_color and sys.stdout.isatty()
    skipped = (f" ({len(examples.bad_rows)} bad rows skipped, first at line {examples.bad_rows[0].line})"
               if examples.bad_rows else "")
    print(f"{config.data.train}: {examples.format} data, {len(examples.examples):,} rows{skipped}; template "
          f"{template.name}; model {config.model.name}; trained text {'coloured' if color else 'in [[ ]]'}\n")
    for line, example in list(zip(examples.lines, examples.examples))[: args.samples]:
        print(f"--- line {line} " + "-" * 40)
        print(render_inspection(encode_example(example, template, tokenizer, max_length), tokenizer, color=color))
        print()
    return 0


def _stats(args) -> int:
    import json

    from ftune.data.generative import dataset_stats_basic
    from ftune.data.encode import encode_example

    config, examples, tokenizer, template, max_length = _load(args)
    stats = dataset_stats_basic(examples)
    lengths = sorted(len(encode_example(e, template, tokenizer, 10**9).input_ids) for e in examples.examples)
    truncated = sum(length > max_length for length in lengths)
    stats["tokens"] = {
        "template": template.name, "max_length": max_length,
        "min": lengths[0] if lengths else 0, "mean": round(sum(lengths) / max(len(lengths), 1), 1),
        "median": lengths[len(lengths) // 2] if lengths else 0,
        "p95": lengths[int(0.95 * (len(lengths) - 1))] if lengths else 0, "max": lengths[-1] if lengths else 0,
        "total": sum(lengths), "truncated_rows": truncated,
    }
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    for key, value in stats.items():
        print(f"{key}: {value}")
    return 0


def _convert(args) -> int:
    from ftune.data.generative import convert_examples, load_generative_file, write_jsonl

    check_convert_target(args.source, args.target, args.force)
    examples = load_generative_file(args.source, format=args.source_format, format_setting="--from")
    records = convert_examples(examples, args.to)
    write_jsonl(records, args.target)
    print(f"wrote {len(records):,} {args.to} rows to {args.target} (from {examples.format}"
          f"{f'; {len(examples.bad_rows)} bad rows skipped' if examples.bad_rows else ''})")
    return 0


def check_convert_target(source: str, target: str, force: bool) -> None:
    """Refuse, before reading anything, an output that would lose data or not be read back."""
    from pathlib import Path

    from ftune.errors import FtuneError

    out = Path(target)
    if out.is_dir():
        raise FtuneError(f"{target}: is a directory; name the output file, e.g. {out / 'converted.jsonl'}")
    if not (out.name.endswith(".jsonl") or out.name.endswith(".jsonl.gz")):
        raise FtuneError(f"{target}: data convert writes JSON Lines; name the output .jsonl or .jsonl.gz")
    if out.exists() and Path(source).exists() and out.resolve() == Path(source).resolve():
        raise FtuneError(f"{target}: is the input file; converting in place would lose its bad rows for good; "
                         "write to a new file")
    if out.exists() and not force:
        raise FtuneError(f"{target}: already exists; pass --force to replace it")
