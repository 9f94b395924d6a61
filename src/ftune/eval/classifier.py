"""Use a trained classifier: load a run, score texts, evaluate a labeled file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftune.errors import FtuneError
from ftune.runs.run_dir import MODEL_DIR, MODEL_INFO


@dataclass
class LoadedClassifier:
    model: Any
    tokenizer: Any
    label_names: list[str]
    max_length: int
    info: dict[str, Any]


def load_run_classifier(run_dir: str | Path) -> LoadedClassifier:
    """Rebuild a finished run's classifier from its ``model/`` directory."""
    from ftune.methods import build_method
    from ftune.models.load import load_classifier, load_tokenizer

    model_dir = Path(run_dir) / MODEL_DIR
    info_path = model_dir / MODEL_INFO
    if not info_path.is_file():
        raise FtuneError(f"{run_dir}: no finished model here (missing {MODEL_DIR}/{MODEL_INFO}); "
                         "the run may have been interrupted before saving")
    info = json.loads(info_path.read_text())
    method = build_method(info["method"], info.get("method_options"))
    labels = info["labels"]
    model = method.load_saved(model_dir, lambda **options: load_classifier(info["base_model"], labels, **options).model)
    model.eval()
    return LoadedClassifier(model, load_tokenizer(model_dir), labels, info["max_length"], info)


def predict_probabilities(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64,
                          progress: bool = False):
    """Class probabilities, shape (len(texts), n_labels). Batches are length-sorted to cut padding."""
    import numpy as np
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    batches = range(0, len(order), batch_size)
    if progress and len(order) > 4 * batch_size:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="predicting", unit="batch", leave=False)
    model.eval()
    with torch.inference_mode():
        for start in batches:
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt").to(device)
            logits = model(**batch).logits.float()
            out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    return out


def evaluate_texts(model, tokenizer, texts: list[str], label_ids: list[int], label_names: list[str],
                   max_length: int, batch_size: int = 64) -> dict[str, Any]:
    """Metrics (with cross-entropy loss) of ``model`` on labeled texts, with the per-example
    predictions beside them (``strip_predictions`` drops them)."""
    import numpy as np

    from ftune.eval.metrics import classification_metrics

    from ftune.eval.baselines import CONFIDENCES, PREDICTIONS

    probabilities = predict_probabilities(model, tokenizer, texts, max_length, batch_size, progress=True)
    true = np.asarray(label_ids)
    loss = float(-np.log(np.clip(probabilities[np.arange(len(true)), true], 1e-12, 1.0)).mean())
    predicted = probabilities.argmax(-1).tolist()
    return {**classification_metrics(true.tolist(), predicted, label_names, loss=loss), PREDICTIONS: predicted,
            CONFIDENCES: probabilities.max(-1).tolist()}
