"""Cheap baselines every classification run is measured against, on the same split."""

from __future__ import annotations

from collections import Counter
from typing import Any


def majority_baseline(train_ids: list[int], eval_ids: list[int], label_names: list[str]) -> dict[str, Any]:
    """Always predict the most frequent training label."""
    from ftune.eval.metrics import classification_metrics

    majority = Counter(train_ids).most_common(1)[0][0]
    return classification_metrics(eval_ids, [majority] * len(eval_ids), label_names)


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
    return classification_metrics(eval_ids, pipeline.predict(eval_texts).tolist(), label_names)


BASELINE_TITLES = {"majority": "majority class", "tfidf_logreg": "TF-IDF + logistic regression",
                   "tfidf_random_forest": "TF-IDF + random forest"}
