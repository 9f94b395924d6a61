"""One layout for every objective: the command line's tables and the model card's are built from
the same metrics, and each figure in metrics.json appears in both."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ftune.recipes.model_card import write_model_card
from ftune.recipes.results import result_tables, training_summary

TRAINING = {"trainable_parameters": 1000, "total_parameters": 100000, "trainable_share": 0.01,
            "optimizer_steps": 12, "epochs": 1.0, "seconds": 30.0, "evaluation_seconds": 10.0,
            "tokens_per_second": 321.5, "device": "cpu", "precision": "fp32", "peak_training_memory_mb": 900.0,
            "memory_plan": None}
CLASSIFIER = {"accuracy": 0.8125, "f1": 0.7931, "precision": 0.8, "recall": 0.79, "loss": 0.4321, "n": 64}
METRICS = {
    "classification": {"validation": {"model": CLASSIFIER,
                                      "majority": {**CLASSIFIER, "accuracy": 0.5117, "loss": None},
                                      "tfidf_logreg": {**CLASSIFIER, "accuracy": 0.7344, "loss": None}},
                       "training": TRAINING},
    "sft": {"validation": {"before": {"loss": 2.3456, "perplexity": 10.44, "n": 20, "tokens": 900,
                                      "samples_ended_with_eos": 1, "samples": 3},
                           "base_4_shot": {"loss": 2.1111, "perplexity": 8.26, "perplexity_ci": [7.0, 9.72], "n": 20,
                                           "tokens": 900},
                           "base_retrieval_4_shot": {"loss": 1.9876, "perplexity": 7.30, "n": 20, "tokens": 900},
                           "after": {"loss": 1.2345, "perplexity": 3.44, "n": 20, "tokens": 900,
                                     "samples_ended_with_eos": 3, "samples": 3},
                           "labels": {"majority": {"accuracy": 0.5, "f1": 0.33, "n": 20},
                                      "base_zero_shot": {"accuracy": 0.61, "f1": 0.6, "n": 20},
                                      "base_2_shot": {"accuracy": 0.66, "f1": 0.65, "n": 20},
                                      "fine_tuned": {"accuracy": 0.9, "f1": 0.89, "n": 20}}},
            "training": TRAINING},
    "dpo": {"validation": {"before": {"preference_accuracy": 0.5, "reward_margin": 0.0, "likelihood_accuracy": 0.4375,
                                      "n": 16},
                           "after": {"preference_accuracy": 0.6875, "reward_margin": 0.1234,
                                     "likelihood_accuracy": 0.5, "n": 16}},
            "training": TRAINING},
}
FIGURES = {"classification": ["0.8125", "0.5117", "0.7344", "0.4321"],
           "sft": ["2.3456", "1.2345", "10.44", "3.44", "1 / 3", "3 / 3", "0.9000", "0.6100", "0.6600",
                   "8.26 ± 1.360", "7.30", "4-shot prompt, retrieved by minilm-l6"],
           "dpo": ["0.6875", "0.1234", "0.4375"]}


class FakeRun:
    path = "runs/x"

    def __init__(self):
        self.files = {}

    def write_text(self, name, text):
        self.files[name] = text


def config():
    return SimpleNamespace(model=SimpleNamespace(name="tiny"), method=SimpleNamespace(name="lora"),
                           train=SimpleNamespace(seed=7), objective=SimpleNamespace(beta=0.1),
                           eval=SimpleNamespace(few_shot=4, retrieval="minilm-l6"))


MANIFEST = {"labels": ["neg", "pos"], "template": "chatml", "format": "alpaca",
            "split": {"train": 100, "validation": 20, "validation_from": "10% of data.train"},
            "files": [{"role": "train", "path": "d.jsonl", "sha256": "ab" * 32, "used_rows": 120, "bad_rows": 0}]}


@pytest.mark.parametrize("objective", ["classification", "sft", "dpo"])
def test_the_printed_tables_and_the_model_card_carry_the_same_figures(objective):
    tables = result_tables(objective, config(), METRICS[objective])
    text = "\n".join(t.text() for t in tables)
    run = FakeRun()
    write_model_card(run, config(), objective, MANIFEST, METRICS[objective])
    card = run.files["README.md"]
    for figure in FIGURES[objective]:
        assert figure in text, (objective, figure)
        assert figure in card, (objective, figure)
    for table in tables:  # every row of every printed table is a row of the card
        for name, _ in table.rows:
            assert f"| {name} |" in card


def test_a_missing_figure_is_a_dash_not_a_crash():
    text = result_tables("classification", config(), METRICS["classification"])[0].text()
    majority = next(line for line in text.splitlines() if line.startswith("majority"))
    assert majority.rstrip().endswith("-")


def test_the_summary_separates_training_from_evaluation_time():
    first = training_summary(TRAINING)[0]
    assert "in 20 s (+ 10 s of held-out evaluation)" in first and "322 real tokens/s" in first
