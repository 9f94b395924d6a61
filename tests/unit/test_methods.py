"""The technique matrix: every registered method on tiny random encoder and decoder models.

A method added to the registry joins this matrix with no edit here: the generic invariants
(head trains, every trainable parameter moves, save -> load reproduces outputs) apply to all;
``OWN_WEIGHTS_TRAINABLE`` and each technique's ``added_parameter_markers`` pin which parameters may train.
"""

from __future__ import annotations

import pytest
import torch

from ftune.methods import build_method, method_names
from ftune.models.load import load_classifier

LABELS = ["negative", "positive"]


def _block_index(name: str) -> int | None:
    for part_a, part_b in zip(name.split(".")[:-1], name.split(".")[1:]):
        if part_a in ("layer", "layers") and part_b.isdigit():
            return int(part_b)
    return None


# Techniques that train the model's own weights: which of them train, written out here
# independently of the technique's code. Every other technique states the parameters it adds
# (``added_parameter_markers``): those and the head train, nothing else.
OWN_WEIGHTS_TRAINABLE = {
    "full": lambda name, task: True,
    "bitfit": lambda name, task: name.endswith(".bias") or task.is_head(name),
    # freeze (default layers=2, tiny models have 2 blocks): both blocks, final norm / pooler, head
    "freeze": lambda name, task: "embed" not in name,
}


def expected_trainable(method, name: str, task) -> bool:
    if method.name in OWN_WEIGHTS_TRAINABLE:
        return OWN_WEIGHTS_TRAINABLE[method.name](_unwrapped(name), task)
    head = task.is_head(_unwrapped(name)) and ".original_module." not in name  # PEFT keeps a frozen copy
    return method.is_added_parameter(name) or "modules_to_save" in name or head


def test_every_technique_states_what_trains():
    silent = [n for n in method_names() if n not in OWN_WEIGHTS_TRAINABLE and not build_method(n).added_parameter_markers]
    assert not silent, f"techniques that state neither added parameters nor an own-weights rule: {silent}"


def _unwrapped(name: str) -> str:
    """A parameter's name in the bare model, whatever wrapper PEFT put around it."""
    for prefix in ("base_model.model.", "base_model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.replace(".modules_to_save.default", "").replace(".original_module", "")


def _task(model_dir, method=None):
    torch.manual_seed(0)
    return load_classifier(str(model_dir), LABELS, **(method.model_load_options("cpu") if method else {}))


def _batch(task):
    texts = ["a warm and funny film", "the plot goes nowhere", "smart tender and beautifully shot", "loud long"]
    batch = task.tokenizer(texts, padding=True, return_tensors="pt")
    batch["labels"] = torch.tensor([1, 0, 1, 0])
    return batch


def _applicable(name, model_dir):
    """The method, the tiny model loaded as the method asks (4-bit for QLoRA), its problems."""
    method = build_method(name)
    task = _task(model_dir, method)
    return method, task, method.check(task)


def _train(model, task, steps: int) -> None:
    """``steps`` AdamW steps (lr 1e-2) on the fixed batch, on whatever trains."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**_batch(task)).loss.backward()
        optimizer.step()


def _trained_outputs(method, task, steps: int):
    """The technique applied and trained ``steps`` steps, in eval mode; its inputs and logits."""
    model = method.apply(task.model, task)
    _train(model, task, steps)
    model.eval()
    batch = {k: v for k, v in _batch(task).items() if k != "labels"}
    with torch.no_grad():
        return model, batch, model(**batch).logits


@pytest.fixture(params=["tiny_bert_dir", "tiny_llama_dir"])
def model_dir(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("name", method_names())
def test_only_intended_parameters_train_and_all_of_them_move(name, model_dir):
    method, task, problems = _applicable(name, model_dir)
    if problems:
        assert name == "bitfit" and "no bias terms" in problems[0]  # Llama has no biases
        pytest.skip(problems[0])
    model = method.apply(task.model, task)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing trains"
    assert any(task.is_head(_unwrapped(n)) for n in trainable), "the head must train"
    added = [n for n, _ in model.named_parameters() if method.is_added_parameter(n)]
    assert bool(added) == bool(method.added_parameter_markers), f"{name}: added parameters {added[:3]}"
    wrong = [n for n, p in model.named_parameters() if p.requires_grad != expected_trainable(method, n, task)]
    assert not wrong, f"{name}: unexpected trainability of {wrong[:5]}"
    before = {n: p.detach().clone() for n, p in trainable.items()}
    _train(model, task, steps=2)
    unchanged = [n for n, p in trainable.items() if torch.equal(p.detach(), before[n])]
    assert not unchanged, f"{name}: trainable parameters that did not move: {unchanged[:5]}"


@pytest.mark.parametrize("name", method_names())
def test_save_then_load_reproduces_outputs(name, model_dir, tmp_path):
    method, task, problems = _applicable(name, model_dir)
    if problems:
        pytest.skip(problems[0])
    model, batch, expected = _trained_outputs(method, task, steps=1)
    method.save(model, tmp_path)
    reloaded = method.load(tmp_path, lambda **options: load_classifier(str(model_dir), LABELS, **options).model)
    reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected)


def test_freeze_trains_only_the_top_blocks(tiny_bert_dir):
    task = _task(tiny_bert_dir)
    method = build_method("freeze", {"layers": 1})
    model = method.apply(task.model, task)
    for name, parameter in model.named_parameters():
        block = _block_index(name)
        if block is not None:
            assert parameter.requires_grad == (block == 1), name
        elif "embed" in name:
            assert not parameter.requires_grad, name
    assert build_method("freeze", {"layers": 5}).check(task) == [
        "method.layers = 5: the model has only 2 transformer blocks"]


def test_lora_presets_pick_attention_or_all_linear(tiny_llama_dir):
    task = _task(tiny_llama_dir)
    attention = build_method("lora").target_layers(task)
    everything = build_method("lora", {"target_modules": "all-linear"}).target_layers(task)
    assert attention and all("self_attn" in n for n in attention)
    assert set(attention) < set(everything) and any("mlp" in n for n in everything)
    assert build_method("lora", {"target_modules": ["q_proj", "v_proj"]}).target_layers(task) == [
        n for n in attention if n.endswith(("q_proj", "v_proj"))]
    assert "matches no linear layer" in build_method("lora", {"target_modules": ["nope"]}).check(task)[0]


MERGEABLE_ADAPTERS = [n for n in method_names() if build_method(n).capabilities.mergeable]


@pytest.mark.parametrize("name", MERGEABLE_ADAPTERS)
def test_merged_model_equals_the_adapter_model(name, model_dir):
    method, task, _ = _applicable(name, model_dir)
    model, batch, expected = _trained_outputs(method, task, steps=2)
    with torch.no_grad():
        merged = method.merge(model)
        assert method.added_parameter_markers
        assert not any(method.is_added_parameter(n) for n, _ in merged.named_parameters())
        torch.testing.assert_close(merged(**batch).logits, expected, atol=1e-5, rtol=1e-4)


def test_capabilities_are_declared_and_checked_before_loading():
    from ftune.settings import load_config
    from ftune.errors import ConfigError

    assert {"lora", "dora", "rslora", "ia3", "loha"} <= set(MERGEABLE_ADAPTERS)
    # mergeable means "has added weights to fold into the base": every mergeable technique saves an adapter
    assert all(build_method(n).saves_adapter for n in MERGEABLE_ADAPTERS)
    assert not any(build_method(n).capabilities.mergeable for n in ("full", "freeze", "bitfit"))
    load_config(None, ["method=full", "run.merge=true"])  # nothing to merge: allowed, ships the whole model
    for name in method_names():  # the technique can be switched off (DPO's reference) exactly when it saves an adapter
        method = build_method(name)
        if not method.saves_adapter:
            with pytest.raises(NotImplementedError, match="own weights"):
                method.disabled(None)
    assert not any(build_method(n).capabilities.mergeable for n in ("qlora", "prompt", "prefix", "ptuning", "adapter"))
    assert [n for n in method_names() if build_method(n).capabilities.quantized_base] == ["qlora"]
    for name in ("prompt", "adapter", "qlora"):
        with pytest.raises(ConfigError, match=f"run.merge = true: '{name}' adapters cannot be merged"):
            load_config(None, [f"method={name}", "run.merge=true"])
