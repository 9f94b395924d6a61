"""QLoRA on CPU: a 4-bit NF4 base, and gradients that an evaluation pass does not corrupt."""

from __future__ import annotations

import pytest
import torch

from ftune.methods import build_method
from ftune.models.load import load_causal_lm

pytest.importorskip("bitsandbytes")


def _batch(tokenizer):
    batch = tokenizer(["the cat is on the table", "a warm and funny film"], padding=True, return_tensors="pt")
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return batch


def _gradients(model, batch):
    torch.manual_seed(0)  # the same LoRA dropout masks
    model.zero_grad()
    model.train()
    model(**batch).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_base_is_4bit_nf4_with_double_quantization(tiny_llama_dir):
    method = build_method("qlora")
    quantized = load_causal_lm(str(tiny_llama_dir), **method.model_load_options("cpu")).model
    full = load_causal_lm(str(tiny_llama_dir)).model
    linear4 = [m for m in quantized.modules() if type(m).__name__ == "Linear4bit"]
    assert linear4 and all(m.weight.quant_state.quant_type == "nf4" for m in linear4)
    assert all(m.weight.quant_state.nested for m in linear4)  # double quantization
    assert quantized.get_memory_footprint() < full.get_memory_footprint()
    assert type(quantized.lm_head).__name__ == "Linear"  # kept in full precision


def test_an_evaluation_pass_does_not_change_the_next_gradients(tiny_llama_dir):
    """bitsandbytes repacks 4-bit weights for CPU inference after an eval-mode forward pass,
    after which backward gives wrong gradients (../shared/NOTES.md). QLoRA turns that off."""
    method = build_method("qlora")
    task = load_causal_lm(str(tiny_llama_dir), **method.model_load_options("cpu"))
    model = method.apply(task.model, task)
    batch = _batch(task.tokenizer)
    before = _gradients(model, batch)
    model.eval()
    with torch.no_grad():
        model(**{k: v for k, v in batch.items() if k != "labels"})
        model.generate(batch["input_ids"][:1], max_new_tokens=2, do_sample=False)
    after = _gradients(model, batch)
    assert before and before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], msg=name)


def test_parameter_counts_of_a_4bit_model_match_the_fp32_model(tiny_llama_dir):
    from ftune.training.device import count_parameters

    method = build_method("qlora")
    quantized = load_causal_lm(str(tiny_llama_dir), **method.model_load_options("cpu")).model
    full = load_causal_lm(str(tiny_llama_dir)).model
    assert count_parameters(quantized)[1] == count_parameters(full)[1]
