"""Ship a finished run to where it will run, and prove the quality survived: the artifact is
loaded in its own runtime (transformers, llama.cpp, ONNX Runtime) and scored on the run's
held-out split beside the PyTorch run. A drop over --max-drop exits with status 1; the
artifact and its export.json stay for inspection.

examples:
  ftune export runs/20261130-120000-minilm-l6-lora --to onnx --int8
  ftune export runs/20261130-120000-smollm2-135m-lora-sft --to gguf --quant q8_0 --out shipped/
  ftune export RUN_DIR --to merged --dtype bf16
"""

from __future__ import annotations

HELP = "export a run (merged model, adapter, GGUF, ONNX), re-checked in its runtime"


def add_arguments(parser) -> None:
    from ftune.export.target import get_target, target_names

    names = target_names()
    parser.epilog = "targets:\n" + "\n".join(
        f"  {name:<10} {get_target(name).description}\n  {'':<10} files: {get_target(name).file_names}"
        for name in names)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory written by `ftune train`")
    parser.add_argument("--to", required=True, choices=names, metavar="TARGET", help=", ".join(names))
    parser.add_argument("--out", help="directory to create (default RUN_DIR/exports/TARGET...); must not exist")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="merged: weight dtype")
    parser.add_argument("--quant", default="f16", choices=["f16", "q8_0"], help="gguf: tensor type")
    parser.add_argument("--int8", action="store_true", help="onnx: also ONNX Runtime dynamic int8 quantization")
    parser.add_argument("--max-drop", type=float, default=None,
                        help="largest accepted loss: accuracy points as a fraction (default 0.01) for "
                             "classifiers, relative perplexity rise (default 0.03) for generative runs")
    parser.add_argument("--examples", type=int, default=None,
                        help="held-out examples to check on (default: all texts; 100 responses)")
    parser.add_argument("--no-check", action="store_true", help="write the artifact without re-checking it")
    parser.add_argument("--json", action="store_true", help="print export.json's content")


def run(args) -> int:
    import json

    from ftune.api import export

    result = export(args.run_dir, args.to, args.out, dtype=args.dtype, quant=args.quant, int8=args.int8,
                    max_drop=args.max_drop, examples=args.examples, check=not args.no_check)
    if args.json:
        print(json.dumps(result.report, indent=2, default=str))
        return 0 if result.passed else 1
    from ftune.export.report import check_table

    print(f"\nexported to {result.directory} ({result.report['total_mb']:,.1f} MB): "
          + ", ".join(name.rsplit("/", 1)[-1] for name in result.report["files"]))
    if "check" in result.report:
        print("\n" + check_table(result.report))
        print(("\n" if result.passed else "\nftune export: FAILED: ") + result.report["check"]["verdict"]["text"])
    return 0 if result.passed else 1
