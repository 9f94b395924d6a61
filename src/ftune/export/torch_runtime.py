"""The PyTorch (transformers) side of an export check: the run's own model, or a merged
export loaded back with plain transformers, behind ``ftune.export.check``'s interfaces."""

from __future__ import annotations

from typing import Sequence


class TorchClassifier:
    def __init__(self, model, tokenizer, max_length: int):
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    def probabilities(self, texts: list[str]):
        from ftune.eval.classifier import predict_probabilities

        return predict_probabilities(self.model, self.tokenizer, texts, self.max_length)


class TorchLanguageModel:
    def __init__(self, model):
        self.model = model

    def response_nll(self, input_ids: list[int], labels: list[int]) -> float:
        import torch

        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([input_ids])).logits[0, :-1].float()
            targets = torch.tensor(labels[1:])
            keep = targets != -100
            logp = torch.log_softmax(logits[keep], dim=-1)
            return float(-logp.gather(1, targets[keep].unsqueeze(1)).sum())

    def greedy_reply(self, prompt_ids: list[int], max_new_tokens: int, stop_ids: Sequence[int]) -> list[int]:
        import torch

        with torch.inference_mode():
            out = self.model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids),
                                      dtype=torch.long), do_sample=False, max_new_tokens=max_new_tokens,
                                      eos_token_id=list(stop_ids), pad_token_id=stop_ids[0])
        reply = out[0, len(prompt_ids):].tolist()
        return reply[:-1] if reply and reply[-1] in stop_ids else reply


def torch_runtime(model, tokenizer, task: str, max_length: int):
    return TorchClassifier(model, tokenizer, max_length) if task == "classification" else TorchLanguageModel(model)
