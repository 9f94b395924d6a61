"""From ``data.*`` settings to the labeled splits a classification run trains and evaluates on."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ftune.config.schema import DataConfig
from ftune.data.classification import LabeledExamples, class_balance_report, format_bad_rows, load_labeled_file
from ftune.data.split import stratified_split, subsample_stratified
from ftune.errors import DataError


def demo_data_path() -> Path:
    """ftune's built-in demo: 400 balanced sentiment rows written for ftune."""
    return Path(str(resources.files("ftune") / "demo" / "sentiment.csv"))


@dataclass
class Split:
    texts: list[str]
    label_ids: list[int]


@dataclass
class ClassificationData:
    label_names: list[str]
    train: Split
    validation: Split
    test: Split | None
    manifest: dict[str, Any]
    notices: list[str] = field(default_factory=list)  # bad-row reports, imbalance warnings


def build_classification_data(data: DataConfig, seed: int) -> ClassificationData:
    """Read, validate, split and label-encode the configured files; report what was skipped."""
    from ftune.runs.run_dir import file_sha256

    train_path = Path(data.train) if data.train else demo_data_path()
    notices: list[str] = []
    files: list[dict[str, Any]] = []

    def load(path: Path, role: str, allowed: list[str] | None) -> LabeledExamples:
        examples = load_labeled_file(
            path, text_columns=data.text_columns, label_column=data.label_column, header=data.header,
            delimiter=data.delimiter, text_separator=data.text_separator, allowed_labels=allowed,
            max_bad_fraction=data.max_bad_fraction,
        )
        if examples.bad_rows:
            notices.append(format_bad_rows(examples))
        notices.extend(examples.notices or [])
        files.append({
            "role": role, "path": str(path.resolve()), "sha256": file_sha256(path),
            "rows": examples.total_rows, "used_rows": len(examples.texts), "bad_rows": len(examples.bad_rows),
            "text_columns": examples.text_columns, "label_column": examples.label_column,
        })
        return examples

    train = load(train_path, "train", data.labels)
    label_names = data.labels or _sorted_labels(train.labels)
    if len(set(train.labels)) < 2:
        raise DataError(f"{train_path}: only one label ({train.labels[0]!r}) in the training rows; "
                        "classification needs at least two")
    indices = list(range(len(train.texts)))
    if data.max_rows and data.max_rows < len(indices):
        indices = subsample_stratified(train.labels, data.max_rows, seed)
    train_labels = [train.labels[i] for i in indices]
    if data.validation:
        validation = load(Path(data.validation), "validation", label_names)
        train_split = _encode([train.texts[i] for i in indices], train_labels, label_names)
        validation_split = _encode(validation.texts, validation.labels, label_names)
    else:
        train_idx, validation_idx = stratified_split(train_labels, data.validation_fraction, seed)
        texts = [train.texts[i] for i in indices]
        if data.drop_overlap:
            train_idx, validation_idx = _drop_overlap(texts, train_idx, validation_idx, notices)
        train_split = _encode([texts[i] for i in train_idx], [train_labels[i] for i in train_idx], label_names)
        validation_split = _encode([texts[i] for i in validation_idx], [train_labels[i] for i in validation_idx], label_names)
    test_split = None
    if data.test:
        test = load(Path(data.test), "test", label_names)
        test_split = _encode(test.texts, test.labels, label_names)
    for role, split in (("validation", validation_split if data.validation else None), ("test", test_split)):
        if split is not None:
            _report_overlap(role, train_split.texts, split.texts, notices)

    counts, warning = class_balance_report([label_names[i] for i in train_split.label_ids])
    if warning:
        notices.append(f"class imbalance in the training split: {warning}")
    manifest = {
        "files": files,
        "labels": label_names,
        "class_counts": {"train": counts, "validation": _counts(validation_split, label_names)},
        "split": {"train": len(train_split.texts), "validation": len(validation_split.texts),
                  "test": len(test_split.texts) if test_split else 0,
                  "validation_from": "file" if data.validation else f"stratified {data.validation_fraction:.0%} of train, seed {seed}"},
    }
    return ClassificationData(label_names, train_split, validation_split, test_split, manifest, notices)


def _drop_overlap(texts: list[str], train_idx: list[int], validation_idx: list[int],
                  notices: list[str]) -> tuple[list[int], list[int]]:
    from ftune.data.overlap import separate_splits

    kept_train, kept_validation = separate_splits([texts[i] for i in train_idx], [texts[i] for i in validation_idx])
    dropped_validation = len(validation_idx) - len(kept_validation)
    dropped_train = len(train_idx) - len(kept_train)
    if not kept_validation:
        raise DataError("every validation row also occurs inside a training row; give a separate "
                        "data.validation file or set data.drop_overlap=false")
    if dropped_validation or dropped_train:
        notices.append(
            f"held-out split kept honest (data.drop_overlap): {dropped_validation:,} of {len(validation_idx):,} "
            f"validation rows dropped (their text occurs inside a training row) and {dropped_train:,} training "
            f"rows dropped (they occur inside a validation row)")
    return [train_idx[i] for i in kept_train], [validation_idx[i] for i in kept_validation]


def _report_overlap(role: str, train_texts: list[str], held_out: list[str], notices: list[str]) -> None:
    from ftune.data.overlap import rows_contained_in

    leaked = rows_contained_in(held_out, train_texts)
    if leaked:
        notices.append(f"warning: {len(leaked):,} of {len(held_out):,} {role} rows occur inside training rows "
                       f"(duplicates or sub-phrases): the {role} score will flatter the model and the baselines")


def _sorted_labels(labels: list[str]) -> list[str]:
    unique = set(labels)
    try:
        return sorted(unique, key=float)  # "1" < "2" < "10"
    except ValueError:
        return sorted(unique)


def _encode(texts: list[str], labels: list[str], label_names: list[str]) -> Split:
    index = {name: i for i, name in enumerate(label_names)}
    return Split(texts=list(texts), label_ids=[index[label] for label in labels])


def _counts(split: Split, label_names: list[str]) -> dict[str, int]:
    counts = {name: 0 for name in label_names}
    for i in split.label_ids:
        counts[label_names[i]] += 1
    return counts
