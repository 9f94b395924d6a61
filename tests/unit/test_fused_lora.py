"""LoRA layers fused into one autograd step (ftune.training.fused_lora) compute what PEFT's
layers compute: outputs and gradients for the input and both adapter matrices, with and
without dropout, in fp32 and under bf16 autocast; PEFT's own forward wherever the fused step
does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ftune.training.fused_lora import fused_lora_layers


class Block(nn.Module):
    def __init__(self, bias: bool = False):
        super().__init__()
        self.up = nn.Linear(24, 40, bias=bias)
        self.down = nn.Linear(40, 24, bias=bias)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def _adapted(dropout=0.0, seed=0, base_bias=False, **options):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(Block(base_bias), LoraConfig(r=4, lora_alpha=8, target_modules=["up", "down"],
                                               lora_dropout=dropout, **options))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero, which would hide a wrong adapter path
            nn.init.normal_(parameter, std=0.3)
    return model


def _gradients(model, x, fused: bool, autocast: bool = False, seed: int = 0):
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad()
    torch.manual_seed(seed)  # the same dropout masks for both ways
    with (fused_lora_layers(model) if fused else _nothing()), torch.autocast("cpu", dtype=torch.bfloat16,
                                                                              enabled=autocast):
        output = model(x)
    weights = torch.linspace(-1, 1, output.numel()).view_as(output)  # a different upstream gradient per element
    (output.float() * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return output.detach().float(), x.grad.clone(), grads


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("dropout,base_bias,trained_bias", [(0.0, False, "none"), (0.3, False, "none"),
                                                          (0.3, True, "none"), (0.0, True, "all")])
def test_fused_layers_give_peft_outputs_and_gradients_in_fp32(dropout, base_bias, trained_bias):
    """Also over a base with a bias (BERT's), frozen or trained (PEFT's bias="all")."""
    model = _adapted(dropout, base_bias=base_bias, bias=trained_bias)
    model.train()
    x = torch.randn(3, 5, 24)
    peft_out, peft_dx, peft_grads = _gradients(model, x, fused=False)
    out, dx, grads = _gradients(model, x, fused=True)
    assert torch.allclose(out, peft_out, rtol=1e-5, atol=1e-5)
    assert torch.allclose(dx, peft_dx, rtol=1e-5, atol=1e-5)
    assert set(grads) == set(peft_grads) and len(grads) == 4 + 2 * (trained_bias == "all")  # A and B (and bias)
    for name, grad in grads.items():
        assert torch.allclose(grad, peft_grads[name], rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("base_bias", [False, True])
def test_fused_layers_follow_bf16_autocast_within_its_rounding(base_bias):
    model = _adapted(base_bias=base_bias)
    x = torch.randn(4, 6, 24)
    peft_out, peft_dx, peft_grads = _gradients(model, x, fused=False, autocast=True)
    out, dx, grads = _gradients(model, x, fused=True, autocast=True)
    exact_out, _, exact_grads = _gradients(model, x, fused=False)

    def error(a, b):
        return float((a - b).norm() / b.norm())

    # the fused step is as close to fp32 as PEFT's bf16 path is (both round to bf16)
    assert error(out, exact_out) < 2 * error(peft_out, exact_out) + 1e-3
    assert error(dx, peft_dx) < 2e-2
    for name in grads:
        assert error(grads[name], exact_grads[name]) < 2 * error(peft_grads[name], exact_grads[name]) + 1e-2, name
        assert grads[name].dtype == torch.float32  # fp32 master weights get fp32 gradients


def test_layers_go_back_to_peft_after_the_block_and_disabled_adapters_use_the_base_alone():
    from peft.tuners.lora.layer import Linear as LoraLayer

    model = _adapted()
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    x = torch.randn(2, 3, 24)
    with torch.no_grad():
        with fused_lora_layers(model):
            assert all("forward" in vars(layer) for layer in layers)
            with fused_lora_layers(model):  # nested: the outer block's routing stays
                pass
            assert all("forward" in vars(layer) for layer in layers)
            with model.disable_adapter():  # DPO's reference pass
                base = model(x)
        assert not any("forward" in vars(layer) for layer in layers)
        with model.disable_adapter():
            assert torch.equal(base, model(x))


def test_a_copy_of_the_model_made_inside_the_block_computes_with_its_own_weights():
    import copy

    model = _adapted()
    x = torch.randn(2, 3, 24)
    with torch.no_grad(), fused_lora_layers(model):
        twin = copy.deepcopy(model)
        for name, parameter in twin.named_parameters():
            if "lora_B" in name:
                parameter.mul_(2)
        assert not torch.equal(twin(x), model(x))
        changed = twin(x)
    with torch.no_grad():
        assert torch.allclose(changed, twin(x), atol=1e-6)  # the copy's own weights, fused or not


def test_dora_and_hooked_layers_keep_peft_s_forward():
    from peft.tuners.lora.layer import Linear as LoraLayer

    model = _adapted(use_dora=True)
    with fused_lora_layers(model):
        assert not any("forward" in vars(m) for m in model.modules() if isinstance(m, LoraLayer))
    model = _adapted()
    layer = model.base_model.model.up
    layer.lora_A["default"].register_forward_pre_hook(lambda *_: None)
    with fused_lora_layers(model):
        assert "forward" not in vars(layer) and "forward" in vars(model.base_model.model.down)


def test_a_tiny_llama_trains_to_the_same_gradients_with_fused_layers(tiny_llama_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(parameter, std=0.1)
    ids = torch.randint(5, 40, (2, 9))
    results = []
    for fused in (False, True):
        model.zero_grad()
        with fused_lora_layers(model) if fused else _nothing():
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (peft_loss, peft_grads), (loss, grads) = results
    assert loss == pytest.approx(peft_loss, rel=1e-6)
    assert len(grads) == len(peft_grads) == 2 * 7 * 2  # A and B of 7 layers in each of 2 blocks
    for name, grad in grads.items():
        assert torch.allclose(grad, peft_grads[name], rtol=1e-4, atol=1e-6), name


def test_a_tiny_bert_classifier_trains_to_the_same_gradients_with_fused_layers(tiny_bert_dir):
    """BERT's layers have a bias, and ftune's classifiers put dropout on the adapters' inputs:
    a fused step that dropped the base's bias once cost the default job 15 points."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2),
                           LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, lora_dropout=0.1,
                                      target_modules=["query", "key", "value"]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name or name.endswith("base_layer.bias"):  # a new BERT's biases start at zero
                nn.init.normal_(parameter, std=0.1)
    model.train()
    ids = torch.randint(5, 40, (3, 7))
    labels = torch.tensor([0, 1, 1])
    results = []
    for fused in (False, True):
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout masks
        with fused_lora_layers(model) if fused else _nothing():
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (peft_loss, peft_grads), (loss, grads) = results
    assert loss == pytest.approx(peft_loss, rel=1e-5)
    assert grads.keys() == peft_grads.keys() and any("lora_A" in name for name in grads)
    for name, grad in grads.items():
        assert torch.allclose(grad, peft_grads[name], rtol=1e-4, atol=1e-6), name
