"""Evaluate or apply a finished run to a file, using the run's own data settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ftune.config.schema import DataConfig
from ftune.errors import ConfigError, FtuneError


def run_data_settings(run_dir: str | Path, overrides: list[str]) -> DataConfig:
    """The run's ``data`` settings with the resolved training columns as defaults, then overrides."""
    from ftune.settings.load import Setting, parse_override, resolve_settings

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
                         batch_size: int = 64, errors: int = 0) -> dict[str, Any]:
    """Metrics of a run's model on a labeled file, with a 95% interval on accuracy (and, with
    ``errors``, that many of its mistakes, the most confident first); rows with labels the
    model lacks are bad rows."""
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
    true_ids = [index[label] for label in examples.labels]
    scores = evaluate_texts(classifier.model, classifier.tokenizer, examples.texts, true_ids, classifier.label_names,
                            classifier.max_length, batch_size)
    verdict = _verdict_on_file(run_dir, scores, examples.texts, true_ids, classifier.label_names)
    return {**_with_interval_and_errors(scores, examples.texts, true_ids, classifier.label_names, errors), **verdict}


def _verdict_on_file(run_dir, scores: dict[str, Any], texts, true_ids, label_names) -> dict[str, Any]:
    """The majority-class and TF-IDF baselines, fitted on the run's own training split, scored on
    the file, and the run's verdict against the better one (paired on the file's rows); or why not."""
    from ftune.config import split_seed
    from ftune.data.prepare import build_classification_data
    from ftune.eval.baselines import BASELINE_TITLES, PREDICTIONS, majority_baseline, strip_predictions, tfidf_baseline
    from ftune.eval.verdict import accuracy_interval, classification_verdict
    from ftune.runs.run_dir import use_recorded_data_paths
    from ftune.settings import config_from_dict

    config = config_from_dict(json.loads((Path(run_dir) / "model" / "ftune-model.json").read_text())["config"])
    use_recorded_data_paths(config, Path(run_dir))
    if config.data.train and not Path(config.data.train).is_file():
        return {"verdict_skipped": f"the run's training file {config.data.train} is gone: no baselines to compare with"}
    data = build_classification_data(config.data, split_seed(config))
    index = {name: i for i, name in enumerate(label_names)}
    train_ids = [index[data.label_names[i]] for i in data.train.label_ids]
    entries = {"model": scores,
               "majority": majority_baseline(train_ids, true_ids, list(label_names)),
               "tfidf_logreg": tfidf_baseline(data.train.texts, train_ids, texts, true_ids, list(label_names),
                                              "logreg", config.train.seed)}
    correct = {key: [p == t for p, t in zip(entry[PREDICTIONS], true_ids)] for key, entry in entries.items()}
    titled = {key: {**entry, "title": BASELINE_TITLES.get(key, key)} for key, entry in entries.items()}
    baselines = {key: {**strip_predictions(entry), "accuracy_ci": accuracy_interval(correct[key])}
                 for key, entry in entries.items() if key != "model"}
    return {"baselines": baselines, "verdict": classification_verdict(titled, correct, seed=config.train.seed)}


def _with_interval_and_errors(scores: dict[str, Any], texts, true_ids, label_names, errors: int) -> dict[str, Any]:
    from ftune.eval.baselines import CONFIDENCES, PREDICTIONS, strip_predictions
    from ftune.eval.failures import misclassified
    from ftune.eval.verdict import accuracy_interval

    scores["accuracy_ci"] = accuracy_interval([p == t for p, t in zip(scores[PREDICTIONS], true_ids)])
    if errors > 0:
        scores["errors"] = misclassified(texts, true_ids, scores[PREDICTIONS], scores[CONFIDENCES], label_names)[:errors]
    return strip_predictions(scores)


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
    empty = [i for i, text in enumerate(texts or []) if not isinstance(text, str) or not text.strip()]
    if empty:  # a label for nothing would be a guess shown as an answer
        from ftune.errors import DataError

        shown = ", ".join(str(i + 1) for i in empty[:10]) + (" ..." if len(empty) > 10 else "")
        raise DataError(f"text{'s' if len(empty) > 1 else ''} {shown} (of {len(texts)}) "
                        f"{'are' if len(empty) > 1 else 'is'} empty or not a string; there is nothing to classify")
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
                        batch_size: int = 4, beta: float | None = None, errors: int = 0) -> dict[str, Any]:
    """What fits the data, for a generative run or a base model: loss and perplexity on the
    response tokens of SFT data; preference accuracy and reward margin on preference pairs;
    label accuracy on labeled rows for a run trained on a labeled task as chat. Each with a 95%
    bootstrap interval, and with ``errors``, that many of the worst examples."""
    from ftune.eval.baselines import EXAMPLE_LOSSES, MARGINS, strip_predictions
    from ftune.eval.failures import worst_pairs, worst_replies
    from ftune.eval.verdict import with_perplexity_intervals, with_preference_intervals
    from ftune.data.collate import PaddedCausalCollator
    from ftune.data.generative import detect_file_format, format_generative_bad_rows, load_generative_file
    from ftune.eval.generative import response_loss
    from ftune.eval.generator import load_generator
    from ftune.data.encode import encode_examples, scored_examples

    generator = load_generator(source)
    if data_format == "classification" or (data_format == "auto" and detect_file_format(path) is None):
        return _label_accuracy_of_run(source, path, generator, errors)
    examples = load_generative_file(path, format=data_format)
    if examples.bad_rows:
        import sys

        print(f"ftune: {format_generative_bad_rows(examples)}", file=sys.stderr)
    if examples.kind == "preference":
        from ftune.eval.preference import encode_pair, preference_scores

        pairs = [encode_pair(p, generator.template, generator.tokenizer, max_length) for p in examples.examples]
        reference, is_base = _preference_reference(source)
        disabled = generator.method.disabled if generator.method is not None and reference is None else None
        beta = _run_beta(source) if beta is None else beta
        pad_id = generator.tokenizer.pad_token_id or 0
        scores = preference_scores(generator.model, pairs, beta, reference, pad_id, same_as_reference=is_base,
                                   disabled=disabled)
        with_preference_intervals(scores)
        if errors > 0:
            scores["errors"] = worst_pairs(examples.examples, scores[MARGINS], errors)
        return {**strip_predictions(scores), "format": examples.format, "template": generator.template.name}
    encoded, truncated = encode_examples(examples.examples, generator.template, generator.tokenizer, max_length)
    if not encoded:
        raise FtuneError(f"{path}: no example has response tokens left within {max_length} tokens")
    scores = response_loss(generator.model, encoded, PaddedCausalCollator.from_tokenizer(generator.tokenizer),
                           batch_size=batch_size)
    with_perplexity_intervals({"scores": scores})
    if errors > 0:
        kept = scored_examples(examples.examples, generator.template, generator.tokenizer, max_length)
        scores["errors"] = worst_replies(kept, scores[EXAMPLE_LOSSES], errors)
    return {**strip_predictions(scores), "format": examples.format, "template": generator.template.name,
            "truncated": truncated}


def _label_accuracy_of_run(source: str, path: str | Path, generator, errors: int = 0) -> dict[str, Any]:
    """Label accuracy (by likelihood of each label's reply) of a run trained on a labeled task."""
    from ftune.data.classification import load_labeled_file
    from ftune.eval.label_scoring import label_accuracy

    info_path = Path(source) / "model" / "ftune-model.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if "label_words" not in info:
        raise FtuneError(f"{path}: labeled rows, but {source} was not trained on a labeled task as chat, so "
                         "it has no label words to score (give SFT or preference data instead)")
    data = run_data_settings(source, [])
    examples = load_labeled_file(path, text_columns=data.text_columns, label_column=data.label_column,
                                 header=data.header, delimiter=data.delimiter, text_separator=data.text_separator,
                                 allowed_labels=info["labels"], max_bad_fraction=data.max_bad_fraction)
    index = {name: i for i, name in enumerate(info["labels"])}
    true_ids = [index[label] for label in examples.labels]
    scores = label_accuracy(generator.model, generator.tokenizer, generator.template, examples.texts, true_ids,
                            info["labels"], info["label_words"], info["instruction"])
    return _with_interval_and_errors(scores, examples.texts, true_ids, info["labels"], errors)

def _run_beta(source: str) -> float:
    """The DPO beta a run was trained with (its implicit reward's scale); 0.1, DPO's usual, otherwise."""
    from ftune.config.schema import ObjectiveConfig

    info_path = Path(source) / "model" / "ftune-model.json"
    config = json.loads(info_path.read_text()).get("config", {}) if info_path.is_file() else {}
    return float(config.get("objective", {}).get("beta", ObjectiveConfig().beta))


def _preference_reference(source: str):
    """(reference model or None, source is a base model). Adapter runs need no reference copy
    (their adapters are disabled); full-model runs are compared with their base model."""
    info_path = Path(source) / "model" / "ftune-model.json"
    if not info_path.is_file():
        return None, True
    from ftune.methods import get_method_class
    from ftune.models.load import load_causal_lm

    info = json.loads(info_path.read_text())
    if get_method_class(info["method"]).saves_adapter:
        return None, False
    return load_causal_lm(info["base_model"]).model, False