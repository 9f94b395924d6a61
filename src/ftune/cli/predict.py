"""Predict labels (with probabilities) for texts or for every row of a file.

examples:
  ftune predict RUN_DIR "a warm, funny film" "two hours I will never get back"
  ftune predict RUN_DIR --data unlabeled.csv data.text_columns=[review] --json
"""

from __future__ import annotations

HELP = "predict labels with probabilities"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run directory written by `ftune train`")
    parser.add_argument("texts", nargs="*", help="texts to classify (or use --data)")
    parser.add_argument("--data", help="a file of texts; its label column, if any, is ignored")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--top", type=int, default=3, help="probabilities shown per text")


def run(args) -> int:
    import json

    from ftune.errors import FtuneError
    from ftune.api import predict

    overrides = [t for t in args.texts if t.startswith("data.") and "=" in t]
    texts = [t for t in args.texts if t not in overrides]
    if bool(texts) == bool(args.data):
        raise FtuneError("give texts to classify, or --data FILE (not both)")
    for text, ranked in predict(args.run_dir, texts or None, args.data, overrides):
        if args.json:
            print(json.dumps({"text": text, "label": ranked[0][0],
                              "probabilities": {label: round(p, 6) for label, p in ranked}}, ensure_ascii=False))
        else:
            shown = "  ".join(f"{label} {p:.3f}" for label, p in ranked[: args.top])
            print(f"{ranked[0][0]:<12} {shown:<40} {text[:80]}")
    return 0
