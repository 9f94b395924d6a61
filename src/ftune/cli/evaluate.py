"""Evaluate a saved run, or a base model, on a file.

A classifier run reports accuracy, macro-F1, precision, recall and loss on a labeled file (the
run's column settings apply unless overridden with data.* settings). A generative run or a
base model reports loss and perplexity on the response tokens of SFT data.

examples:
  ftune eval runs/20261125-120000-minilm-l6-lora --data reviews_test.csv
  ftune eval RUN_DIR --data news.csv data.label_column=0 data.text_columns=[1,2] --json
  ftune eval smollm2-135m --data alpaca_heldout.jsonl --json
  ftune eval RUN_DIR --data reviews_test.csv --errors 10     # and the 10 worst examples
"""

from __future__ import annotations

HELP = "evaluate a saved run on a labeled file"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR|MODEL",
                        help="a run directory written by `ftune train`, or a model (generative data)")
    parser.add_argument("--data", required=True, help="labeled file (csv, tsv, json, jsonl, .gz)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--errors", type=int, default=0, metavar="N",
                        help="also print the N worst examples: a classifier's most confident mistakes, the replies "
                             "least likely per token, the preference pairs most preferred the wrong way")
    parser.add_argument("overrides", nargs="*", metavar="data.key=value",
                        help="override the run's column settings, e.g. data.label_column=0")


def run(args) -> int:
    import json

    from ftune.api import evaluate
    from ftune.errors import ConfigError
    from ftune.eval.run_eval import is_classification_run

    if args.errors < 0:
        raise ConfigError([f"--errors must be 0 or more, got {args.errors}"])
    classifier = is_classification_run(args.run_dir)
    scores = (evaluate(args.run_dir, args.data, args.overrides, batch_size=args.batch_size, errors=args.errors)
              if classifier else evaluate(args.run_dir, args.data, args.overrides, errors=args.errors))
    if args.json:
        if classifier:
            keys = ("accuracy", "accuracy_ci", "f1", "precision", "recall", "loss", "n", "confusion_matrix", "errors",
                    "baselines", "verdict", "verdict_skipped")
            scores = {k: scores[k] for k in keys if k in scores}
        print(json.dumps(scores))
        return 0
    print(f"{args.data}: {scores['n']:,} rows")
    keys = (("accuracy", "f1", "precision", "recall", "loss") if classifier else
            ("loss", "perplexity", "accuracy", "f1", "preference_accuracy", "reward_margin", "likelihood_accuracy",
             "tokens"))
    for key in keys:
        value = scores.get(key)
        if value is None:
            continue
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        interval = scores.get(f"{key}_ci")
        if interval:
            shown += f"  (95% CI {interval[0]:.4f} to {interval[1]:.4f})"
        print(f"  {key:<20}{shown}")
    if classifier:
        from ftune.eval.metrics import format_confusion_matrix

        print("\n" + format_confusion_matrix(scores))
        print("\nper class:")
        for label, row in scores["per_class"].items():
            print(f"  {label:<20} precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
                  f"f1 {row['f1']:.3f}  n {row['support']}")
        for key, baseline in scores.get("baselines", {}).items():
            low, high = baseline["accuracy_ci"]
            print(f"  baseline {key:<15} accuracy {baseline['accuracy']:.4f}  (95% CI {low:.4f} to {high:.4f}; "
                  "fitted on the run's training split)")
        if scores.get("verdict"):
            print(f"\nverdict (on {args.data}): {scores['verdict']['text']}")
        elif scores.get("verdict_skipped"):
            print(f"\nno verdict: {scores['verdict_skipped']}")
    if args.errors:
        _print_errors(scores.get("errors", []), args.errors)
    return 0


def _print_errors(errors: list[dict], wanted: int) -> None:
    print(f"\nthe {len(errors)} worst of the examples" + (f" (asked for {wanted})" if len(errors) < wanted else "") + ":")
    for rank, error in enumerate(errors, 1):
        if "predicted" in error:
            head = f"true {error['true']}, predicted {error['predicted']} (confidence {error['confidence']:.3f})"
            body = error["text"]
        elif "reward_margin" in error:
            head = f"reward margin {error['reward_margin']:+.3f}: rejected preferred"
            body = f"prompt: {error['prompt']}\n      chosen: {error['chosen']}\n      rejected: {error['rejected']}"
        else:
            head = f"loss {error['loss_per_token']:.3f} per token over {error['tokens']} tokens"
            body = (f"prompt: {error['prompt']}\n      reply: {error['reply']}" if "reply" in error else error["text"])
        print(f"  {rank}. {head}\n      {_shorten(body)}")


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."
