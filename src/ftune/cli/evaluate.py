"""Evaluate a saved run on a labeled file (same formats as training). The run's column
settings apply unless overridden with data.* settings.

examples:
  ftune eval runs/20261125-120000-minilm-l6-lora --data reviews_test.csv
  ftune eval RUN_DIR --data news.csv data.label_column=0 data.text_columns=[1,2] --json
"""

from __future__ import annotations

HELP = "evaluate a saved run on a labeled file"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run directory written by `ftune train`")
    parser.add_argument("--data", required=True, help="labeled file (csv, tsv, json, jsonl, .gz)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("overrides", nargs="*", metavar="data.key=value",
                        help="override the run's column settings, e.g. data.label_column=0")


def run(args) -> int:
    import json

    from ftune.eval.run_eval import evaluate_run_on_file

    metrics = evaluate_run_on_file(args.run_dir, args.data, args.overrides, batch_size=args.batch_size)
    if args.json:
        keys = ("accuracy", "f1", "precision", "recall", "loss", "n")
        print(json.dumps({k: metrics[k] for k in keys} | {"confusion_matrix": metrics["confusion_matrix"]}))
        return 0
    from ftune.eval.metrics import format_confusion_matrix

    print(f"{args.data}: {metrics['n']:,} rows")
    for key in ("accuracy", "f1", "precision", "recall", "loss"):
        print(f"  {key:<10}{metrics[key]:.4f}")
    print("\n" + format_confusion_matrix(metrics))
    print("\nper class:")
    for label, row in metrics["per_class"].items():
        print(f"  {label:<20} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
              f"f1 {row['f1']:.3f}  n {row['support']}")
    return 0
