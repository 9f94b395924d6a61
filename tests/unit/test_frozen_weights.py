"""Under bf16 autocast a PEFT model's frozen linear weights are stored in bf16 while it trains
(autocast would cast them for every matmul anyway): the run computes the same numbers, and
the fp32 weights come back bit for bit afterwards."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.unit.test_memory_fit import ALPACA, logged_losses


def _lora_model(**options):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    linear = torch.nn.Linear
    base = torch.nn.Sequential(linear(16, 16), torch.nn.ReLU(), linear(16, 16), linear(16, 4))
    return get_peft_model(base, LoraConfig(r=4, target_modules=["0", "2"], init_lora_weights=False, **options))


def _frozen_snapshot(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}


def _same_weights(model, snapshot) -> bool:
    import torch

    now = dict(model.named_parameters())
    return all(now[name].dtype == value.dtype and torch.equal(now[name], value) for name, value in snapshot.items())


@pytest.mark.parametrize("method,objective", [("lora", "sft"), ("ia3", "sft"), ("prompt", "sft"), ("dora", "sft"),
                                              ("lora", "dpo")])
def test_a_bf16_run_trains_the_same_and_ends_with_the_loaded_fp32_weights(tiny_llama_dir, tmp_path, monkeypatch,
                                                                          method, objective):
    """Bit for bit: the losses, the held-out figures and the trained weights. DoRA keeps its
    adapted layers' weights in fp32 (it takes their norms) and stores the others in bf16; DPO's
    reference is the same model with its adapters off, on the stored weights too."""
    import torch
    from safetensors.torch import load_file

    from ftune.recipes.dispatch import train_for_objective
    from ftune.settings import load_config
    from ftune.training import frozen_weights, memory_fit

    fit_to_memory = memory_fit.fit_to_memory
    seen: list[tuple[bool, torch.dtype]] = []  # (autocast on, dtype of a stored layer's weight) per forward
    models, snapshots = [], []

    def watched_fit(config, trainer, prepared, *args, **kwargs):
        snapshots.append(_frozen_snapshot(prepared.model))
        layer = frozen_weights.castable_layers(prepared.model)[0]
        layer.register_forward_pre_hook(lambda m, _: seen.append((torch.is_autocast_enabled("cpu"), m.weight.dtype)))
        models.append(prepared.model)
        return fit_to_memory(config, trainer, prepared, *args, **kwargs)

    def train(name: str):
        data = ALPACA if objective == "sft" else ALPACA.parent / "preference.jsonl"
        config = load_config(None, [f"model={tiny_llama_dir}", f"data.train={data}", "data.validation_fraction=0.25",
                                    f"objective={objective}", f"method={method}", "train.batch_size=8",
                                    "train.max_steps=3", "train.learning_rate=0.01", "model.max_length=96",
                                    "generate.samples=0", "train.precision=bf16", f"run.dir={tmp_path / name}"])
        return train_for_objective(config, echo=lambda *_: None)

    monkeypatch.setattr(memory_fit, "fit_to_memory", watched_fit)
    stored = train("stored")
    assert {dtype for autocast, dtype in seen if autocast} == {torch.bfloat16}  # probe, check, steps, evaluations
    assert {dtype for autocast, dtype in seen if not autocast} == {torch.float32}  # the evaluation after training
    assert _same_weights(models[0], snapshots[0])  # every frozen weight back, bit for bit, in fp32

    watched = next(name for name, m in models[0].named_modules() if m._forward_pre_hooks)

    def same_hook_fit(config, trainer, prepared, *args, **kwargs):
        # the same hooked layer, so that it takes PEFT's path in both runs (fused_lora skips hooked layers)
        prepared.model.get_submodule(watched).register_forward_pre_hook(lambda m, _: None)
        return fit_to_memory(config, trainer, prepared, *args, **kwargs)

    monkeypatch.setattr(frozen_weights, "castable_layers", lambda model: [])
    monkeypatch.setattr(memory_fit, "fit_to_memory", same_hook_fit)
    kept = train("kept")
    assert logged_losses(stored.run_dir) == logged_losses(kept.run_dir)
    assert stored.metrics["validation"] == kept.metrics["validation"]
    adapters = [load_file(next(run.run_dir.rglob("adapter_model.safetensors"))) for run in (stored, kept)]
    assert adapters[0].keys() == adapters[1].keys()
    assert all(torch.equal(adapters[0][key], adapters[1][key]) for key in adapters[0])


def test_only_plain_frozen_linears_of_a_peft_model_are_stored_in_bf16():
    import torch
    from peft import LoraConfig, get_peft_model

    from ftune.training.frozen_weights import castable_layers

    model = _lora_model()
    castable = castable_layers(model)
    inner = model.base_model.model
    # the adapted layers' base weights and the untouched last layer; never the trained adapters
    assert castable == [inner[0].base_layer, inner[2].base_layer, inner[3]]
    assert castable_layers(inner) == []  # not a PEFT model: its checkpoints would hold the bf16 weights

    dora = _lora_model(use_dora=True)  # DoRA reads its base weight to take norms in fp32
    assert castable_layers(dora) == [dora.base_model.model[3]]

    torch.manual_seed(0)
    tied = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    tied[1].weight = tied[0].weight  # read by two layers
    tied_model = get_peft_model(tied, LoraConfig(r=2, target_modules=["0"]))
    assert castable_layers(tied_model) == []


@pytest.mark.parametrize("stash", ["file", "memory"])
def test_the_fp32_weights_come_back_bit_for_bit_even_after_an_error(monkeypatch, stash):
    import torch

    from ftune.training import frozen_weights

    if stash == "memory":  # as where the temporary directory is a tmpfs
        monkeypatch.setattr(frozen_weights, "_in_memory_filesystem", lambda path: True)
    model = _lora_model()
    before = _frozen_snapshot(model)
    x = torch.randn(5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(x)
        with frozen_weights.frozen_weights_in(model, torch.bfloat16):
            assert model.base_model.model[3].weight.dtype == torch.bfloat16
            assert torch.equal(model(x), expected)  # autocast rounds fp32 weights to the same bf16
        with pytest.raises(RuntimeError), frozen_weights.frozen_weights_in(model, torch.bfloat16):
            raise RuntimeError("a failed step")
    assert _same_weights(model, before)
    with frozen_weights.frozen_weights_in(model, None), frozen_weights.frozen_weights_in(model, torch.bfloat16, 2):
        assert _same_weights(model, before)  # fp32 training, or several processes: left alone


def test_the_memory_plan_measures_with_the_weights_stored_and_restores_them_even_when_it_fails(monkeypatch):
    import torch

    from ftune.training import memory_fit

    model = _lora_model()
    before = _frozen_snapshot(model)
    trainer = SimpleNamespace(args=SimpleNamespace(bf16=True, fp16=False, world_size=1))
    stored_during_planning = []

    def failing_plan(*args):
        stored_during_planning.append(model.base_model.model[3].weight.dtype)
        raise RuntimeError("no room")

    monkeypatch.setattr(memory_fit, "_fit_to_memory", failing_plan)
    with pytest.raises(RuntimeError):
        memory_fit.fit_to_memory(None, trainer, SimpleNamespace(model=model), None, head="chunked")
    assert stored_during_planning == [torch.bfloat16]
    assert _same_weights(model, before)
