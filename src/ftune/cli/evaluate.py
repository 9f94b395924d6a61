"""Evaluate a saved run, or a base model, on a file.

A classifier run reports accuracy, macro-F1, precision, recall and loss on a labeled file (the
run's column settings apply unless overridden with data.* settings). A generative run or a
base model reports loss and perplexity on the response tokens of SFT data.

examples:
  ftune eval runs/20261125-120000-minilm-l6-lora --data reviews_test.csv
  ftune eval RUN_DIR --data news.csv data.label_column=0 data.text_columns=[1,2] --json
  ftune eval smollm2-135m --data alpaca_heldout.jsonl --json
"""

from __future__ import annotations

HELP = "evaluate a saved run on a labeled file"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR|MODEL",
                        help="a run directory written by `ftune train`, or a model (generative data)")
    parser.add_argument("--data", required=True, help="labeled file (csv, tsv, json, jsonl, .gz)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("overrides", nargs="*", metavar="data.key=value",
                        help="override the run's column settings, e.g. data.label_column=0")


def run(args) -> int:
    import json

    from ftune.api import evaluate
    from ftune.eval.run_eval import is_classification_run

    if not is_classification_run(args.run_dir):
        scores = evaluate(args.run_dir, args.data, args.overrides)
        if args.json:
            print(json.dumps(scores))
            return 0
        print(f"{args.data}: {scores['n']:,} rows")
        for key in ("loss", "perplexity", "accuracy", "f1", "preference_accuracy", "reward_margin",
                    "likelihood_accuracy", "tokens"):
            if scores.get(key) is not None:
                print(f"  {key:<20}{scores[key]:.4f}" if isinstance(scores[key], float) else f"  {key:<20}{scores[key]}")
        return 0
    metrics = evaluate(args.run_dir, args.data, args.overrides, batch_size=args.batch_size)
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
