"""Classification metrics: the numbers every run and every baseline reports."""

from __future__ import annotations

from typing import Any, Sequence


def classification_metrics(
    true_ids: Sequence[int], predicted_ids: Sequence[int], label_names: list[str], loss: float | None = None
) -> dict[str, Any]:
    """Accuracy, macro F1 / precision / recall, confusion matrix and a per-class report."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(label_names)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        true_ids, predicted_ids, labels=ids, average="macro", zero_division=0
    )
    per_p, per_r, per_f, support = precision_recall_fscore_support(
        true_ids, predicted_ids, labels=ids, average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(true_ids, predicted_ids)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "loss": None if loss is None else float(loss),
        "n": len(true_ids),
        "confusion_matrix": {
            "labels": label_names,
            "rows_true_columns_predicted": confusion_matrix(true_ids, predicted_ids, labels=ids).tolist(),
        },
        "per_class": {
            name: {"precision": float(per_p[i]), "recall": float(per_r[i]), "f1": float(per_f[i]), "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
    }


def format_confusion_matrix(metrics: dict[str, Any]) -> str:
    """A small text table: rows are true labels, columns predicted."""
    labels = metrics["confusion_matrix"]["labels"]
    rows = metrics["confusion_matrix"]["rows_true_columns_predicted"]
    width = max(8, *(len(l) for l in labels)) + 2
    lines = ["true \\ predicted".ljust(width) + "".join(l[:width - 2].rjust(width) for l in labels)]
    for label, row in zip(labels, rows):
        lines.append(label[:width - 2].ljust(width) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)
