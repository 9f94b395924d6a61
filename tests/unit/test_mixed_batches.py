"""``Method.serves_mixed_batches``: what a server relies on to batch requests for different runs
on one base. A technique that claims it must give each row exactly its own adapter's output in
a mixed batch; one that does not must be one PEFT refuses, or one where
PEFT would silently give some row the wrong adapter."""

from __future__ import annotations

import pytest
import torch

from ftune.methods import build_method, method_names
from ftune.methods.peft_method import PeftMethod
from ftune.models.load import load_causal_lm

CPU_PEFT = [n for n in method_names() if issubclass(type(build_method(n)), PeftMethod) and n != "qlora"]


def _two_adapters(name, tiny_llama_dir):
    """The tiny Llama with two adapters of technique ``name``, "first" and "second", each with random
    (non-zero) weights so they differ from each other and from the base."""
    from peft import get_peft_model

    method = build_method(name)
    task = load_causal_lm(str(tiny_llama_dir), **method.model_load_options("cpu"))
    config = method.peft_config(task)  # before wrapping: the targets are the base model's layers
    model = get_peft_model(task.model, config, adapter_name="first")
    model.add_adapter("second", config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if ".first" in parameter_name or ".second" in parameter_name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    model.eval()
    return method, model, task.tokenizer


def test_lora_claims_mixed_batches_and_dora_does_not():
    assert build_method("lora").serves_mixed_batches() and build_method("rslora").serves_mixed_batches()
    assert not build_method("dora").serves_mixed_batches()
    assert not build_method("lora", {"use_dora": True}).serves_mixed_batches()


@pytest.mark.parametrize("name", CPU_PEFT)
def test_the_claim_holds(name, tiny_llama_dir):
    method, model, tokenizer = _two_adapters(name, tiny_llama_dir)
    batch = tokenizer(["the cat is on the table", "a warm and funny film", "the table"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        try:
            mixed = model(**batch, adapter_names=["first", "second", "__base__"]).logits
        except (ValueError, TypeError):
            assert not method.serves_mixed_batches(), f"{name} claims mixed batches, but PEFT refuses them"
            return
        alone = {}
        for adapter in ("first", "second"):
            model.set_adapter(adapter)
            alone[adapter] = model(**batch).logits
        with model.disable_adapter():
            alone["__base__"] = model(**batch).logits
    assert not torch.allclose(alone["first"], alone["second"])  # the adapters differ: a mix-up would show
    rows_right = all(torch.allclose(mixed[row], alone[adapter][row], atol=1e-5)
                     for row, adapter in enumerate(["first", "second", "__base__"]))
    # claimed: every row gets its own adapter; not claimed: PEFT would silently mix them up
    assert rows_right == method.serves_mixed_batches(), name
