"""One vector per text from a pre-trained model, with no training: mean-pooled over the real
tokens for encoders (as sentence-transformers' all-MiniLM-L6-v2 does), the last real token's
hidden state for decoders; L2-normalised."""

from __future__ import annotations

from typing import Any, Sequence


def pooled_vectors(model, batch: dict[str, Any], pooling: str):
    """(rows x hidden) unit vectors for a tokenized ``batch``; ``pooling`` is mean or last."""
    import torch

    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state  # a bare AutoModel: encoder or decoder body
    mask = batch["attention_mask"]
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    else:  # the last real token, wherever padding put it
        positions = torch.arange(mask.shape[1]).expand_as(mask)
        last = (positions * mask).argmax(dim=1)
        pooled = hidden[torch.arange(hidden.shape[0]), last]
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def text_vectors(model, tokenizer, texts: Sequence[str], *, pooling: str, max_length: int = 256,
                 batch_size: int = 64, progress: bool = False):
    """A (len(texts) x hidden) float32 numpy array, in batches of similar length."""
    import numpy as np

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = None
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="embedding", unit="batch", dynamic_ncols=True, leave=False)
    for start in starts:
        chosen = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in chosen], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        vectors = pooled_vectors(model, dict(batch), pooling).numpy()
        if out is None:
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[chosen] = vectors
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
