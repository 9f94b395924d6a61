"""From ``data.*`` settings to the train / held-out examples of a generative run (SFT or DPO)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftune.config.schema import DataConfig
from ftune.errors import DataError


@dataclass
class GenerativeData:
    format: str
    kind: str  # "sft" or "preference"
    train: list[Any]  # Conversation | PlainText | PreferencePair
    validation: list[Any]
    manifest: dict[str, Any]
    notices: list[str] = field(default_factory=list)


def build_generative_data(data: DataConfig, seed: int) -> GenerativeData:
    """Read and validate the files, hold out a seeded share for validation, report bad rows."""
    from ftune.data.generative import format_generative_bad_rows, load_generative_file
    from ftune.runs.run_dir import file_sha256

    notices: list[str] = []
    files: list[dict[str, Any]] = []

    def load(path: str, role: str):
        loaded = load_generative_file(path, format=data.format, max_bad_fraction=data.max_bad_fraction)
        if loaded.bad_rows:
            notices.append(format_generative_bad_rows(loaded))
        files.append({"role": role, "path": str(Path(path).resolve()), "sha256": file_sha256(path),
                      "format": loaded.format, "rows": loaded.total_rows, "used_rows": len(loaded.examples),
                      "bad_rows": len(loaded.bad_rows)})
        return loaded

    train = load(data.train, "train")
    examples = list(train.examples)
    if data.max_rows and data.max_rows < len(examples):
        examples = random.Random(seed).sample(examples, data.max_rows)
    if data.validation:
        validation_file = load(data.validation, "validation")
        if validation_file.kind != train.kind:
            raise DataError(f"{data.validation}: {validation_file.format} data, but the training file holds "
                            f"{train.format} data")
        train_examples, validation = examples, list(validation_file.examples)
    else:
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        held_out = max(1, round(data.validation_fraction * len(examples)))
        if len(examples) < 2:
            raise DataError(f"{data.train}: needs at least 2 usable rows to hold one out for validation")
        validation = [examples[i] for i in sorted(order[:held_out])]
        train_examples = [examples[i] for i in sorted(order[held_out:])]
        if data.drop_overlap:
            seen = {repr(e) for e in train_examples}
            kept = [e for e in validation if repr(e) not in seen]
            if len(kept) < len(validation):
                notices.append(f"held-out split kept honest (data.drop_overlap): {len(validation) - len(kept)} "
                               "validation rows dropped (exact duplicates of training rows)")
            validation = kept or validation
    manifest = {
        "files": files, "format": train.format, "kind": train.kind,
        "split": {"train": len(train_examples), "validation": len(validation),
                  "validation_from": "file" if data.validation else
                  f"random {data.validation_fraction:.0%} of train, seed {seed}"},
    }
    return GenerativeData(train.format, train.kind, train_examples, validation, manifest, notices)
