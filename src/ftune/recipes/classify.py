"""Fine-tune a text classifier end to end: data -> model -> technique -> Trainer -> eval -> ship."""

from __future__ import annotations

from typing import Any

from ftune.config import Config, split_seed
from ftune.training.loop import TrainedRun


def train_classifier(config: Config, echo=print, resume=None) -> TrainedRun:
    """Train, evaluate against the baselines, and save a reloadable run directory."""
    from transformers import DataCollatorWithPadding

    from ftune.data.prepare import build_classification_data
    from ftune.methods import build_method
    from ftune.models.load import load_classifier
    from ftune.training.loop import build_trainer, open_run, result_of_other_process, run_training, start_run
    from ftune.training.memory_fit import BatchShape, fit_to_memory
    from ftune.recipes.finish import finish_training

    method = build_method(config.method.name, config.method.options)
    data = build_classification_data(config.data, split_seed(config))
    for notice in data.notices:
        echo(f"ftune: {notice}")
    split = data.manifest["split"]
    echo(f"ftune: {split['train']:,} training rows, {split['validation']:,} validation rows"
         + (f", {split['test']:,} test rows" if split["test"] else "")
         + f"; labels: {', '.join(data.label_names)}")
    too_few = small_split_notice(split["validation"], "validation split" if config.data.validation is None
                                 else "validation file")
    if too_few:
        echo(f"ftune: {too_few}")

    run, prepared = start_run(config, method, lambda **options: load_classifier(
        config.model.name, data.label_names, config.model.trust_remote_code, **options), echo=echo, resume=resume)
    tokenizer = prepared.task.tokenizer
    train_set = TokenizedExamples(tokenizer, data.train, config.model.max_length)
    session = build_trainer(
        config, method, prepared, train_set,
        TokenizedExamples(tokenizer, data.validation, config.model.max_length),
        DataCollatorWithPadding(tokenizer), run,
        metric=config.train.metric, compute_metrics=_training_metrics, min_steps=config.train.min_steps, echo=echo,
    )
    shape = BatchShape([len(item["input_ids"]) for item in train_set.items], config.train.batch_size)
    session.memory_plan = fit_to_memory(config, session.trainer, prepared, shape, head="classifier", echo=echo)
    open_run(run, config, data.manifest, session.memory_plan, echo)
    training = run_training(session, config, echo)
    other_process = result_of_other_process(run, training, "classification")
    if other_process:
        return other_process
    model = session.trainer.model
    training.update(training_loss_against_prior(session.trainer.state.log_history, data.train.label_ids))
    if not training["learned_beyond_prior"]:
        echo(f"ftune: the training loss ended at {training['final_training_loss']:.3f}, no lower than the "
             f"{training['prior_loss']:.3f} that predicting the label frequencies gives: the model learned nothing "
             "from the texts; a smaller train.learning_rate (if the loss fell and came back), a larger one (if "
             "it never fell) or more steps (if the run was short) may help")

    metrics = _evaluate_all(config, model, tokenizer, data)
    metrics["training"] = training
    _write_errors(run, data, metrics["validation"]["model"])
    true_ids = {"validation": data.validation.label_ids, **({"test": data.test.label_ids} if data.test else {})}

    def verdict(cost):
        from ftune.eval.baselines import BASELINE_TITLES
        from ftune.eval.verdict import classification_run_verdict

        return classification_run_verdict(metrics, true_ids, BASELINE_TITLES, cost=cost, seed=config.train.seed)

    return finish_training(run, config, "classification", data.manifest, metrics, method=method, model=model,
                           tokenizer=tokenizer, extra={"labels": data.label_names}, verdict=verdict,
                           tracking=session.tracking)


# Below this many held-out rows, ftune says up front how large a difference must be to show.
SMALL_SPLIT_ROWS = 100


def small_split_notice(rows: int, what: str) -> str | None:
    """What a held-out split of ``rows`` rows can tell apart: the 95% interval of an accuracy
    near 0.5 is about +-0.98/sqrt(n), so a small split cannot favour fine-tuning unless it is
    far ahead of the baselines."""
    if rows >= SMALL_SPLIT_ROWS:
        return None
    import math

    points = min(100, round(98 / math.sqrt(max(rows, 1))))
    return (f"the {what} has {rows} row(s): accuracies closer than about {points} points cannot be told "
            "apart from chance, so the verdict can only favour fine-tuning if it is far ahead of the baselines; "
            "more labeled rows (or a larger data.validation file) give a verdict that can tell")


# The training loss must end below this share of the label prior's loss to count as learning.
PRIOR_LOSS_SHARE = 0.95


def training_loss_against_prior(log_history: list[dict], label_ids: list[int]) -> dict[str, Any]:
    """The training loss at the end (the mean of the last tenth of the logged losses, at least
    the last three) against the loss of predicting the training labels' frequencies, their
    entropy. A run that ends no lower learned nothing from the texts: a collapse under too
    large a learning rate looks like this, and so does one too small to move."""
    import math
    from collections import Counter

    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    counts = Counter(label_ids)
    prior = -sum(n / len(label_ids) * math.log(n / len(label_ids)) for n in counts.values())
    if not losses or prior <= 0:  # nothing logged, or one label only
        return {"final_training_loss": None, "prior_loss": round(prior, 4), "learned_beyond_prior": True}
    tail = losses[-max(3, len(losses) // 10):]
    final = sum(tail) / len(tail)
    return {"final_training_loss": round(final, 4), "prior_loss": round(prior, 4),
            "learned_beyond_prior": final < PRIOR_LOSS_SHARE * prior}


def _write_errors(run, data, model_scores: dict[str, Any]) -> None:
    """``errors.jsonl``: the validation rows the model got wrong, most confident first."""
    import json

    from ftune.eval.baselines import CONFIDENCES, PREDICTIONS
    from ftune.eval.failures import misclassified

    split = data.validation
    errors = misclassified(split.texts, split.label_ids, model_scores[PREDICTIONS], model_scores[CONFIDENCES],
                           data.label_names)
    run.write_text("errors.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors))


def _training_metrics(prediction) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = prediction.predictions.argmax(-1)
    return {"accuracy": float(accuracy_score(prediction.label_ids, predicted)),
            "f1": float(f1_score(prediction.label_ids, predicted, average="macro"))}


class TokenizedExamples:
    """A map-style dataset of tokenized texts with their label ids."""

    def __init__(self, tokenizer, split, max_length: int):
        encoded = tokenizer(split.texts, truncation=True, max_length=max_length)
        self.items = [
            {"input_ids": ids, "attention_mask": mask, "labels": label}
            for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], split.label_ids)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def _evaluate_all(config: Config, model, tokenizer, data) -> dict[str, Any]:
    from ftune.eval.baselines import majority_baseline, tfidf_baseline
    from ftune.eval.classifier import evaluate_texts
    from ftune.eval.verdict import with_intervals

    splits = {"validation": data.validation, **({"test": data.test} if data.test else {})}
    chosen = config.eval.chosen_baselines()
    frozen = _FrozenBaselines(config, data) if {"embeddings", "knn"} & set(chosen) else None
    metrics: dict[str, Any] = {}
    for name, split in splits.items():
        result = {"model": evaluate_texts(model, tokenizer, split.texts, split.label_ids, data.label_names,
                                          config.model.max_length, config.train.eval_batch_size)}
        if "majority" in chosen:
            result["majority"] = majority_baseline(data.train.label_ids, split.label_ids, data.label_names)
        if "tfidf" in chosen:
            key = f"tfidf_{config.eval.baseline_model}"
            result[key] = tfidf_baseline(data.train.texts, data.train.label_ids, split.texts, split.label_ids,
                                         data.label_names, config.eval.baseline_model, config.train.seed)
        if frozen is not None:
            result.update(frozen.scores(split, chosen))
        with_intervals(result, split.label_ids, seed=config.train.seed)
        metrics[name] = result
    return metrics



class _FrozenBaselines:
    """The base model's frozen sentence vectors (cached on disk) for the embeddings and kNN
    baselines; the training rows capped at ``eval.baseline_rows`` by a stratified sample."""

    def __init__(self, config: Config, data):
        from ftune.data.split import capped_rows
        from ftune.eval.embedding_baselines import FrozenEncoder

        self.label_names = data.label_names
        rows = capped_rows(data.train.label_ids, config.eval.baseline_rows, config.train.seed)
        self.encoder = FrozenEncoder(config.model.name, config.model.max_length)
        self.train_ids = [data.train.label_ids[i] for i in rows]
        self.train_vectors = self.encoder.vectors([data.train.texts[i] for i in rows])

    def scores(self, split, chosen: list[str]) -> dict[str, Any]:
        from ftune.eval.embedding_baselines import knn_baseline, vector_logreg_baseline

        vectors = self.encoder.vectors(split.texts)
        found = {}
        if "embeddings" in chosen:
            found["embeddings_logreg"] = vector_logreg_baseline(self.train_vectors, self.train_ids, vectors,
                                                                split.label_ids, self.label_names)
        if "knn" in chosen:
            found["knn"] = knn_baseline(self.train_vectors, self.train_ids, vectors, split.label_ids, self.label_names)
        return found
