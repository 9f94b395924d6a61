"""Cheap baselines every classification run is measured against, on the same split."""

from __future__ import annotations

from collections import Counter
from typing import Any


def majority_baseline(train_ids: list[int], eval_ids: list[int], label_names: list[str]) -> dict[str, Any]:
    """Always predict the most frequent training label."""
    from ftune.eval.metrics import classification_metrics

    majority = Counter(train_ids).most_common(1)[0][0]
    predicted = [majority] * len(eval_ids)
    return {**classification_metrics(eval_ids, predicted, label_names), PREDICTIONS: predicted}


def tfidf_baseline(
    train_texts: list[str], train_ids: list[int], eval_texts: list[str], eval_ids: list[int],
    label_names: list[str], model: str = "logreg", seed: int = 42,
) -> dict[str, Any]:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression or a random forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from ftune.eval.metrics import classification_metrics

    classifier = (
        LogisticRegression(max_iter=2000, C=4.0)
        if model == "logreg"
        else RandomForestClassifier(n_estimators=300, n_jobs=-1, random_state=seed)
    )
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1), classifier)
    pipeline.fit(train_texts, train_ids)
    predicted = pipeline.predict(eval_texts).tolist()
    return {**classification_metrics(eval_ids, predicted, label_names), PREDICTIONS: predicted}


def strip_predictions(metrics: dict[str, Any]) -> dict[str, Any]:
    """A run's metrics as ``metrics.json`` keeps them: no per-example values (keys starting
    with ``_``) at any depth."""
    return {k: strip_predictions(v) if isinstance(v, dict) else v for k, v in metrics.items()
            if not k.startswith(PER_EXAMPLE)}


# Per-example values kept beside the scores for intervals, paired tests and errors.jsonl, and
# never written to metrics.json, start with PER_EXAMPLE: predicted label ids (and, for the
# model, the probability of each prediction), response losses, preference wins.
PER_EXAMPLE = "_"
PREDICTIONS = "_predicted_ids"
CONFIDENCES = "_confidences"
EXAMPLE_LOSSES = "_example_losses"  # (summed negative log-likelihood, scored tokens) per example
PAIR_WINS = "_wins"  # 1 / 0.5 / 0 per preference pair, by the implicit reward
LIKELIHOOD_WINS = "_likelihood_wins"  # the same by per-token likelihood alone
MARGINS = "_margins"  # each preference pair's implicit reward margin

BASELINE_TITLES = {"majority": "majority class", "tfidf_logreg": "TF-IDF + logistic regression",
                   "tfidf_random_forest": "TF-IDF + random forest",
                   "embeddings_logreg": "frozen embeddings + logistic regression",
                   "knn": "k-nearest neighbours (k=10, frozen embeddings)"}
