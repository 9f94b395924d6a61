"""Every technique on a tiny causal LM (with biases, so BitFit applies): trains, moves, reloads."""

from __future__ import annotations

import pytest
import torch

from ftune.methods import build_method, method_names
from tests.unit.test_methods import expected_trainable
from ftune.models.load import load_causal_lm


@pytest.fixture(scope="module")
def biased_llama_dir(tmp_path_factory, tiny_llama_dir):
    """The tiny Llama with attention and MLP biases (like Qwen / GPT-2 style models)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("biased-llama")
    config = LlamaConfig.from_pretrained(tiny_llama_dir)
    config.attention_bias = config.mlp_bias = True
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(directory)
    return directory


def _batch(tokenizer):
    batch = tokenizer(["the cat is on the table", "a warm and funny film"], padding=True, return_tensors="pt")
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return batch


@pytest.mark.parametrize("name", method_names())
def test_technique_trains_and_reloads_a_causal_lm(name, biased_llama_dir, tmp_path):
    method = build_method(name)
    task = load_causal_lm(str(biased_llama_dir), **method.model_load_options("cpu"))
    assert method.check(task) == []
    model = method.apply(task.model, task)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    wrong = [n for n, p in model.named_parameters() if p.requires_grad != expected_trainable(method, n, task)]
    assert trainable and not wrong, f"{name}: unexpected trainability of {wrong[:5]}"
    if name != "full":
        assert len(trainable) < len(list(model.parameters()))
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    model.train()
    for _ in range(2):
        optimizer.zero_grad()
        model(**_batch(task.tokenizer)).loss.backward()
        optimizer.step()
    assert all(not torch.equal(p.detach(), before[n]) for n, p in trainable.items())
    model.eval()
    inputs = {k: v for k, v in _batch(task.tokenizer).items() if k != "labels"}
    with torch.no_grad():
        expected = model(**inputs).logits
    method.save(model, tmp_path)
    reloaded = method.load(tmp_path, lambda **options: load_causal_lm(str(biased_llama_dir), **options).model, task="causal_lm")
    reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected)
