"""Bottleneck adapters on tiny random BERT and Llama models: identity start, placement, counts,
shipping only the adapter, option errors. (Importing the method registers it, so the generic
matrices in test_methods*.py include "adapter" in the same session.)"""

from __future__ import annotations

import json

import pytest
import torch

from ftune.errors import FtuneError
from ftune.methods import build_method, get_method_class
from ftune.methods.adapter import sublayer_output  # importing registers "adapter"
from ftune.models.load import load_causal_lm, load_classifier

LABELS = ["negative", "positive"]
TEXTS = ["a warm and funny film", "the plot goes nowhere", "smart tender and beautifully shot", "loud long"]


@pytest.fixture(params=["tiny_bert_dir", "tiny_llama_dir"])
def model_dir(request):
    return request.getfixturevalue(request.param)


def _task(model_dir):
    torch.manual_seed(0)
    return load_classifier(str(model_dir), LABELS)


def _inputs(task):
    return dict(task.tokenizer(TEXTS, padding=True, return_tensors="pt"))


def _logits(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def _adapters(model):
    from ftune.models.adapter_layers import adapted_layers

    return adapted_layers(model)


def _train_one_step(model, task):
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        model(**_inputs(task), labels=torch.tensor([1, 0, 1, 0])).loss.backward()
        optimizer.step()


@pytest.mark.parametrize("placement", ["pfeiffer", "houlsby"])
def test_new_adapters_leave_the_model_exactly_as_it_was(model_dir, placement):
    task = _task(model_dir)
    inputs = _inputs(task)
    before = _logits(task.model, inputs)
    model = build_method("adapter", {"placement": placement, "activation": "gelu"}).apply(task.model, task)
    assert _adapters(model)
    assert torch.equal(_logits(model, inputs), before)


def test_houlsby_adds_an_attention_adapter_to_every_block(model_dir):
    counts, names = {}, {}
    for placement in ("pfeiffer", "houlsby"):
        task = _task(model_dir)
        model = build_method("adapter", {"placement": placement}).apply(task.model, task)
        names[placement] = [n for n, _ in _adapters(model)]
        counts[placement] = len(names[placement])
    blocks = len(_task(model_dir).blocks())
    assert blocks == 2
    assert counts == {"pfeiffer": blocks, "houlsby": 2 * blocks}
    if "bert" in str(model_dir):
        assert names["pfeiffer"] == ["bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense"]
        assert names["houlsby"][:2] == ["bert.encoder.layer.0.attention.output.dense", "bert.encoder.layer.0.output.dense"]
    else:
        assert names["pfeiffer"] == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
        assert names["houlsby"][:2] == ["model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj"]


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu"])
def test_every_fresh_adapter_learns_from_the_first_step(model_dir, activation):
    # Only [CLS] of BERT's last block reaches the head: a bottleneck of 2 ReLU units with
    # independent random rows can start dead on all four [CLS] tokens and never train.
    task = _task(model_dir)
    model = build_method("adapter", {"placement": "houlsby", "activation": activation}).apply(task.model, task)
    model.train()
    model(**_inputs(task), labels=torch.tensor([1, 0, 1, 0])).loss.backward()
    for name, layer in _adapters(model):
        assert layer.adapter.up.weight.grad.abs().sum() > 0, name
        assert layer.adapter.down.weight.grad.abs().sum() == 0, name  # up = 0: down learns from step 2


@pytest.mark.parametrize(("reduction_factor", "bottleneck"), [(16, 2), (8, 4), (64, 1)])  # hidden size 32
def test_trainable_parameters_are_the_adapters_and_the_head(model_dir, reduction_factor, bottleneck):
    task = _task(model_dir)
    model = build_method("adapter", {"placement": "houlsby", "reduction_factor": reduction_factor}).apply(task.model, task)
    hidden = model.config.hidden_size
    head = sum(p.numel() for n, p in model.named_parameters() if task.is_head(n))
    per_adapter = 2 * hidden * bottleneck + hidden + bottleneck
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == len(_adapters(model)) * per_adapter + head
    assert all(m.adapter.down.out_features == bottleneck for _, m in _adapters(model))
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(".adapter." not in n and not task.is_head(n) for n in frozen)


def test_save_ships_only_adapters_and_head_and_load_reproduces_logits(model_dir, tmp_path):
    from safetensors.torch import load_file

    task = _task(model_dir)
    method = build_method("adapter", {"placement": "houlsby"})
    model = method.apply(task.model, task)
    _train_one_step(model, task)
    inputs = _inputs(task)
    expected = _logits(model, inputs)
    method.save(model, tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert saved and all(".adapter." in k or task.is_head(k) for k in saved)
    assert {k for k in saved if task.is_head(k)} == {n for n, _ in model.named_parameters() if task.is_head(n)}
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < model_bytes / 5
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["head_modules"] == task.head_modules and config["options"]["placement"] == "houlsby"

    reloaded = method.load(tmp_path, lambda: load_classifier(str(model_dir), LABELS).model)
    assert len(_adapters(reloaded)) == len(_adapters(model))
    torch.testing.assert_close(_logits(reloaded, inputs), expected, rtol=0, atol=0)
    with method.disabled(reloaded):  # DPO's reference: the base model
        base = load_classifier(str(model_dir), LABELS).model
        base.load_state_dict({k: v for k, v in saved.items() if task.is_head(k)}, strict=False)
        torch.testing.assert_close(_logits(reloaded, inputs), _logits(base, inputs))
    assert not torch.equal(_logits(reloaded, inputs), _logits(base, inputs))  # enabled again


def test_load_refuses_a_different_base_model(tiny_bert_dir, tiny_llama_dir, tmp_path):
    task = _task(tiny_bert_dir)
    method = build_method("adapter")
    method.save(method.apply(task.model, task), tmp_path)
    with pytest.raises(FtuneError, match="base model they were trained on"):
        method.load(tmp_path, lambda: load_classifier(str(tiny_llama_dir), LABELS).model)


def test_bad_options_name_the_key(tiny_llama_dir):
    check = get_method_class("adapter").check_options
    assert check({"reduction_factor": 16, "placement": "pfeiffer", "activation": "relu"}) == []
    assert check({"reduction_factor": 0, "placement": "x", "activation": "tanh"}) == [
        "method.reduction_factor = 0: must be a whole number, at least 1",
        "method.placement = 'x': use houlsby or pfeiffer",
        "method.activation = 'tanh': use relu, gelu or silu",
    ]
    task = _task(tiny_llama_dir)
    method = build_method("adapter", {"placement": "x"})
    assert method.check(task) == ["method.placement = 'x': use houlsby or pfeiffer"]
    with pytest.raises(FtuneError, match="method.placement = 'x'"):
        method.apply(task.model, task)


def test_a_model_without_sublayer_outputs_is_a_clear_problem():
    from torch import nn

    from ftune.models.task import TaskModel

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.ModuleDict({"qkv": nn.Linear(8, 24)})
            self.mlp = nn.ModuleDict({"fc_in": nn.Linear(8, 32), "fc_out": nn.Linear(32, 8)})

    task = TaskModel(model=nn.Sequential(nn.ModuleList([Block(), Block()])), tokenizer=None, kind="decoder")
    problems = build_method("adapter", {"placement": "houlsby"}).check(task)
    assert problems == [
        "method.placement = 'houlsby': no attention output layer in 2 of 2 blocks (a linear layer named like "
        "o_proj, out_proj, dense, c_proj, out_lin); 0.0 has attn.qkv, mlp.fc_in, mlp.fc_out",
        "method.placement = 'houlsby': no feed-forward output layer in 2 of 2 blocks (a linear layer named like "
        "down_proj, output.dense, fc2, c_proj, lin2, dense_4h_to_h); 0.0 has attn.qkv, mlp.fc_in, mlp.fc_out",
    ]
    with pytest.raises(FtuneError, match="no attention output layer"):
        build_method("adapter", {"placement": "houlsby"}).apply(task.model, task)


def test_adapters_go_in_once(tiny_llama_dir):
    task = _task(tiny_llama_dir)
    build_method("adapter").apply(task.model, task)
    assert build_method("adapter", {"placement": "houlsby"}).check(task) == [
        "method.name = 'adapter': this model already has adapters; apply the method once"]


def test_sublayer_outputs_are_recognised_by_name():
    assert sublayer_output("attention.output.dense") == "attention"
    assert sublayer_output("crossattention.output.dense") == "attention"
    assert sublayer_output("output.dense") == "feed_forward"
    assert sublayer_output("intermediate.dense") is None
    assert sublayer_output("attention.self.query") is None
    assert sublayer_output("self_attn.o_proj") == "attention"
    assert sublayer_output("mlp.down_proj") == "feed_forward"
    assert sublayer_output("mlp.up_proj") is None


def test_causal_lm_generates_and_trains_with_gradient_checkpointing(tiny_llama_dir):
    task = load_causal_lm(str(tiny_llama_dir))
    prompt = task.tokenizer(["the cat is on"], return_tensors="pt")
    torch.manual_seed(0)
    before = task.model.generate(**prompt, max_new_tokens=5, do_sample=False)
    model = build_method("adapter", {"placement": "houlsby"}).apply(task.model, task)
    assert torch.equal(model.generate(**prompt, max_new_tokens=5, do_sample=False), before)

    batch = task.tokenizer(["the cat is on the table", "a warm and funny film"], padding=True, return_tensors="pt")
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)

    def adapter_grads():
        model.zero_grad()
        model(**batch).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    model.train()
    model.config.use_cache = False
    for module in model.modules():  # dropout off: both passes must compute the same thing
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    # Fresh adapters (up = 0): the up-projections learn from the first step, no ReLU unit is dead.
    fresh = adapter_grads()
    assert all(fresh[n].abs().sum() > 0 for n in fresh if n.endswith(("up.weight", "up.bias")))
    with torch.no_grad():
        for _, layer in _adapters(model):  # as after some training: every adapter gets gradients
            layer.adapter.up.weight.normal_(std=0.1)
    plain = adapter_grads()
    model.activation_checkpointing_enable()  # what the Trainer calls for train.gradient_checkpointing
    checkpointed = adapter_grads()
    assert plain and all(g.abs().sum() > 0 for g in plain.values())
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name])
