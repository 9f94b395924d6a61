"""A classifier exported to ONNX, scored with ONNX Runtime and the tokenizer saved beside it:
no torch model, no peft, no ftune run is needed to use the artifact."""

from __future__ import annotations

import json
from pathlib import Path

LABELS_FILE = "labels.json"  # {"labels": [...], "max_length": N, "inputs": [...], "model_file": ...}


class OnnxClassifier:
    """Class probabilities from an ONNX classifier that outputs logits; texts are tokenized as
    ``ftune.eval.classifier.predict_probabilities`` does (length-sorted batches, truncation at
    ``max_length``, padding to the longest in the batch), so the two are comparable."""

    def __init__(self, model_path: str | Path, tokenizer, max_length: int, batch_size: int = 64, threads: int = 0):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default
        self.session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.tokenizer, self.max_length, self.batch_size = tokenizer, max_length, batch_size

    @classmethod
    def from_directory(cls, directory: str | Path, model_file: str | None = None, **options) -> "OnnxClassifier":
        """The classifier an ONNX export directory holds: its ``labels.json`` names the model file
        (unless ``model_file`` is given) and the length texts are truncated at."""
        from transformers import AutoTokenizer

        directory = Path(directory)
        described = json.loads((directory / LABELS_FILE).read_text())
        return cls(directory / (model_file or described["model_file"]), AutoTokenizer.from_pretrained(directory),
                   described["max_length"], **options)

    def probabilities(self, texts: list[str]):
        """Shape (len(texts), n_labels), rows in the order of ``texts``."""
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: list = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], truncation=True, max_length=self.max_length,
                                   padding=True, return_tensors="np")
            missing = [name for name in self.input_names if name not in batch]
            if missing:
                raise ValueError(f"the ONNX model takes {', '.join(missing)}, which the tokenizer does not produce")
            feed = {name: np.asarray(batch[name], dtype=np.int64) for name in self.input_names}
            (logits,) = self.session.run(["logits"], feed)
            for i, row in zip(idx, softmax(logits.astype(np.float32))):
                rows[i] = row
        if not rows:
            width = self.session.get_outputs()[0].shape[-1]
            return np.zeros((0, width if isinstance(width, int) else 0), dtype=np.float32)
        return np.stack(rows)


def softmax(logits):
    import numpy as np

    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
