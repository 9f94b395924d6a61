"""Evaluate or apply a finished run to a file, using the run's own data settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ftune.config.schema import DataConfig
from ftune.errors import ConfigError, FtuneError


def run_data_settings(run_dir: str | Path, overrides: list[str]) -> DataConfig:
    """The run's ``data`` settings with the resolved training columns as defaults, then overrides."""
    from ftune.config.load import Setting, parse_override, resolve_settings

    run_dir = Path(run_dir)
    info_path = run_dir / "model" / "ftune-model.json"
    if not info_path.is_file():
        raise FtuneError(f"{run_dir}: not a finished ftune run (no model/ftune-model.json)")
    data = dict(json.loads(info_path.read_text())["config"]["data"])
    manifest_path = run_dir / "data.json"
    if manifest_path.is_file():
        train_file = json.loads(manifest_path.read_text())["files"][0]
        data["text_columns"] = data.get("text_columns") or train_file.get("text_columns")
        if data.get("label_column") is None:
            data["label_column"] = train_file.get("label_column")
    settings = {f"data.{k}": Setting(v, f"{run_dir}/model/ftune-model.json") for k, v in data.items()}
    problems: list[str] = []
    for text in overrides:
        parsed = parse_override(text, problems)
        if parsed and not parsed[0].startswith("data."):
            problems.append(f"override '{text}': only data.* settings can be changed here")
        elif parsed:
            settings[parsed[0]] = parsed[1]
    if problems:
        raise ConfigError(problems)
    return resolve_settings(settings, check=False).data


def evaluate_run_on_file(run_dir: str | Path, path: str | Path, overrides: list[str],
                         batch_size: int = 64) -> dict[str, Any]:
    """Metrics of a run's model on a labeled file; rows with labels the model lacks are bad rows."""
    from ftune.data.classification import format_bad_rows, load_labeled_file
    from ftune.eval.classifier import evaluate_texts, load_run_classifier

    data = run_data_settings(run_dir, overrides)
    classifier = load_run_classifier(run_dir)
    examples = load_labeled_file(
        path, text_columns=data.text_columns, label_column=data.label_column, header=data.header,
        delimiter=data.delimiter, text_separator=data.text_separator,
        allowed_labels=classifier.label_names, max_bad_fraction=data.max_bad_fraction,
    )
    if examples.bad_rows:
        import sys

        print(f"ftune: {format_bad_rows(examples)}", file=sys.stderr)
    index = {name: i for i, name in enumerate(classifier.label_names)}
    return evaluate_texts(classifier.model, classifier.tokenizer, examples.texts,
                          [index[label] for label in examples.labels], classifier.label_names,
                          classifier.max_length, batch_size)


def predict_run(run_dir: str | Path, texts: list[str] | None, path: str | None,
                overrides: list[str]) -> Iterator[tuple[str, list[tuple[str, float]]]]:
    """Yield (text, [(label, probability), ...] best first) for texts or a file's rows."""
    from ftune.data.classification import load_texts
    from ftune.eval.classifier import load_run_classifier, predict_probabilities

    if path is not None:
        data = run_data_settings(run_dir, overrides)
        texts, bad_rows = load_texts(path, text_columns=data.text_columns, header=data.header,
                                     delimiter=data.delimiter, text_separator=data.text_separator)
        if bad_rows:
            import sys

            from ftune.data.classification import format_bad_rows

            print(f"ftune: {format_bad_rows(bad_rows)}", file=sys.stderr)
    classifier = load_run_classifier(run_dir)
    probabilities = predict_probabilities(classifier.model, classifier.tokenizer, texts,
                                          classifier.max_length, progress=True)
    for text, row in zip(texts, probabilities):
        ranked = sorted(zip(classifier.label_names, row.tolist()), key=lambda pair: -pair[1])
        yield text, ranked


def is_classification_run(source: str | Path) -> bool:
    info_path = Path(source) / "model" / "ftune-model.json"
    return info_path.is_file() and json.loads(info_path.read_text()).get("task") == "classification"


def evaluate_generative(source: str, path: str | Path, *, data_format: str = "auto", max_length: int = 1024,
                        batch_size: int = 4) -> dict[str, Any]:
    """Loss and perplexity on the response tokens of SFT data, for a run or a base model."""
    from ftune.data.collate import PaddedCausalCollator
    from ftune.data.generative import format_generative_bad_rows, load_generative_file
    from ftune.eval.generative import response_loss
    from ftune.eval.generator import load_generator
    from ftune.train.sft import encode_examples

    examples = load_generative_file(path, format=data_format)
    if examples.bad_rows:
        import sys

        print(f"ftune: {format_generative_bad_rows(examples)}", file=sys.stderr)
    generator = load_generator(source)
    encoded, truncated = encode_examples(examples.examples, generator.template, generator.tokenizer, max_length)
    scores = response_loss(generator.model, encoded, PaddedCausalCollator.from_tokenizer(generator.tokenizer),
                           batch_size=batch_size)
    return {**scores, "format": examples.format, "template": generator.template.name, "truncated": truncated}
