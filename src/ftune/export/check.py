"""Score an artifact in its own runtime on the run's held-out split, beside the PyTorch run.

A runtime provides one of two small interfaces: a ``Classifier`` (class probabilities for
texts) or a ``LanguageModel`` (summed log-likelihood of response tokens, and greedy replies).
The same measurement runs through the PyTorch run and through the artifact, in one process,
so the two rows differ only in the runtime.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence


class Classifier(Protocol):
    def probabilities(self, texts: list[str]):  # (len(texts), n_labels) numpy array
        ...


class LanguageModel(Protocol):
    def response_nll(self, input_ids: list[int], labels: list[int]) -> float:
        """Summed negative log-likelihood of the tokens whose label is not -100."""

    def greedy_reply(self, prompt_ids: list[int], max_new_tokens: int, stop_ids: Sequence[int]) -> list[int]:
        """Greedy continuation of the prompt, without the stop token."""


@dataclass
class HeldOutTexts:
    texts: list[str]
    label_ids: list[int]
    label_names: list[str]


@dataclass
class HeldOutResponses:
    items: list[dict[str, Any]]  # encoded examples: input_ids and labels (-100 outside responses)
    prompts: list[list[int]]  # prompt token ids, for greedy replies
    stop_ids: list[int]
    max_new_tokens: int = 48


def measure_classifier(classifier: Classifier, held_out: HeldOutTexts, reference: list[int] | None = None
                       ) -> tuple[dict[str, Any], list[int]]:
    """Accuracy, macro-F1, ms per example and (against ``reference`` predictions) agreement."""
    from sklearn.metrics import accuracy_score, f1_score

    started = time.perf_counter()
    probabilities = classifier.probabilities(held_out.texts)
    seconds = time.perf_counter() - started
    predicted = [int(row.argmax()) for row in probabilities]
    scores = {"n": len(predicted),
              "accuracy": float(accuracy_score(held_out.label_ids, predicted)),
              "f1": float(f1_score(held_out.label_ids, predicted, average="macro")),
              "ms_per_example": 1000 * seconds / max(1, len(predicted))}
    if reference is not None:
        scores["agreement"] = sum(a == b for a, b in zip(predicted, reference)) / max(1, len(predicted))
    return scores, predicted


def measure_language_model(model: LanguageModel, held_out: HeldOutResponses,
                           reference_replies: list[list[int]] | None = None) -> tuple[dict[str, Any], list[list[int]]]:
    """Response loss and perplexity, greedy replies (identical to the reference's, if given)
    and generated tokens per second."""
    nll, tokens = 0.0, 0
    started = time.perf_counter()
    for item in held_out.items:
        nll += model.response_nll(list(item["input_ids"]), list(item["labels"]))
        tokens += sum(1 for label in item["labels"] if label != -100)
    scoring_seconds = time.perf_counter() - started
    replies, generated, started = [], 0, time.perf_counter()
    for prompt in held_out.prompts:
        reply = model.greedy_reply(list(prompt), held_out.max_new_tokens, held_out.stop_ids)
        replies.append(reply)
        generated += len(reply) + 1
    generating_seconds = time.perf_counter() - started
    loss = nll / max(1, tokens)
    scores = {"n": len(held_out.items), "tokens": tokens, "loss": loss, "perplexity": math.exp(min(loss, 50)),
              "ms_per_example": 1000 * scoring_seconds / max(1, len(held_out.items)),
              "generated_tokens_per_second": generated / generating_seconds if generating_seconds else None,
              "replies": len(replies)}
    if reference_replies is not None:
        scores["identical_replies"] = sum(a == b for a, b in zip(replies, reference_replies))
    return scores, replies


@dataclass
class Verdict:
    passed: bool
    drop: float  # accuracy points lost, or relative perplexity rise
    max_drop: float
    measure: str

    def describe(self) -> str:
        what = "accuracy drop" if self.measure == "accuracy" else "perplexity rise"
        unit = f"{100 * self.drop:.2f} points" if self.measure == "accuracy" else f"{100 * self.drop:.2f}%"
        limit = f"{100 * self.max_drop:.2f}" + (" points" if self.measure == "accuracy" else "%")
        return f"{what} {unit} ({'within' if self.passed else 'over'} --max-drop {limit})"


DEFAULT_MAX_DROP = {"accuracy": 0.01, "perplexity": 0.03}


def verdict(reference: dict[str, Any], artifact: dict[str, Any], max_drop: float | None) -> Verdict:
    """Accuracy may fall by at most ``max_drop`` (absolute); perplexity may rise by at most
    ``max_drop`` (relative)."""
    if "accuracy" in reference:
        limit = DEFAULT_MAX_DROP["accuracy"] if max_drop is None else max_drop
        drop = reference["accuracy"] - artifact["accuracy"]
        return Verdict(drop <= limit + 1e-12, drop, limit, "accuracy")
    limit = DEFAULT_MAX_DROP["perplexity"] if max_drop is None else max_drop
    drop = artifact["perplexity"] / reference["perplexity"] - 1
    return Verdict(drop <= limit + 1e-12, drop, limit, "perplexity")
