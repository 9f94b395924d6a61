"""Accuracy of a generative model on a labeled task, by the likelihood of each label's reply.

As lm-evaluation-harness does for SST-2: the prediction is the label whose reply (word plus
end-of-turn) is most likely after the prompt; no free text is parsed.
"""

from __future__ import annotations

from typing import Any


def label_accuracy(model, tokenizer, template, texts: list[str], label_ids: list[int], label_names: list[str],
                   words: list[str], instruction: str, shots=(), progress: bool = True) -> dict[str, Any]:
    """Classification metrics of ``model`` choosing among ``words``; ``shots`` are earlier turns."""
    import torch

    from ftune.data.labeled_chat import label_prompt
    from ftune.data.masking import encode_prompt
    from ftune.eval.metrics import classification_metrics

    device = next(model.parameters()).device
    end = template.end_of_turn or tokenizer.eos_token or ""
    replies = [tokenizer(word + end, add_special_tokens=False)["input_ids"] for word in words]
    rows = range(len(texts))
    if progress and len(texts) > 50:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc="scoring labels", unit="text", leave=False)
    predicted = []
    model.eval()
    with torch.inference_mode():
        for i in rows:
            prompt = encode_prompt([*shots, *label_prompt(texts[i], instruction)], template, tokenizer)
            width = len(prompt) + max(len(r) for r in replies)
            ids = torch.full((len(replies), width), tokenizer.pad_token_id or 0, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, reply in enumerate(replies):
                ids[row, : len(prompt) + len(reply)] = torch.tensor(prompt + reply)
                mask[row, : len(prompt) + len(reply)] = 1
            logps = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                            use_cache=False).logits.float(), dim=-1)
            scores = []
            for row, reply in enumerate(replies):
                positions = torch.arange(len(prompt) - 1, len(prompt) + len(reply) - 1, device=device)
                scores.append(float(logps[row, positions, torch.tensor(reply, device=device)].sum()))
            predicted.append(max(range(len(scores)), key=scores.__getitem__))
    return classification_metrics(label_ids, predicted, label_names)
