"""Under bf16 autocast, LoRA adapters take their inputs in bf16 (PEFT's cast up to the fp32
adapter weights is a copy autocast undoes); outside autocast the cast is back in place."""

from __future__ import annotations

import pytest

from tests.unit.test_memory_fit import sft_config


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_adapters_see_the_autocast_dtype_in_training_and_fp32_after(tiny_llama_dir, tmp_path, monkeypatch, precision):
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    from ftune.recipes.dispatch import train_for_objective as train_sft
    from ftune.training import memory_fit

    # (autocast on, dtype of an adapted layer's input, dtype its LoRA A matrix received)
    seen: list[tuple[bool, torch.dtype, torch.dtype]] = []
    models = []
    fit_to_memory = memory_fit.fit_to_memory

    def watch(layer, lora_a):
        given = {}
        layer.register_forward_pre_hook(lambda _m, inputs: given.update(dtype=inputs[0].dtype))
        lora_a.register_forward_pre_hook(
            lambda _m, inputs: seen.append((torch.is_autocast_enabled("cpu"), given["dtype"], inputs[0].dtype)))

    def watched_fit(config, trainer, prepared, *args, **kwargs):
        models.append(prepared.model)
        for module in prepared.model.modules():
            if isinstance(module, BaseTunerLayer) and hasattr(module, "lora_A"):
                watch(module, module.lora_A["default"])
        return fit_to_memory(config, trainer, prepared, *args, **kwargs)

    monkeypatch.setattr(memory_fit, "fit_to_memory", watched_fit)
    result = train_sft(sft_config(tiny_llama_dir, tmp_path, f"train.precision={precision}", "train.max_steps=2"),
                       echo=lambda *_: None)
    assert result.metrics["training"]["precision"] == precision
    in_autocast = [(given, received) for autocast, given, received in seen if autocast]
    outside = {received for autocast, _, received in seen if not autocast}
    assert outside == {torch.float32}  # fp32 training, and evaluation after training: the cast is on
    if precision == "bf16":  # the probe, the memory check and the training steps
        # Llama's norms hand q/k/v and gate/up an fp32 residual stream; o_proj and down_proj get bf16
        assert {given for given, _ in in_autocast} == {torch.float32, torch.bfloat16}
        assert all(received == given for given, received in in_autocast)
    else:
        assert not in_autocast
    layers = [m for m in models[0].modules() if isinstance(m, BaseTunerLayer)]
    assert layers and all(layer.cast_input_dtype_enabled for layer in layers)  # restored after training


def test_uncast_adapter_inputs_give_the_same_lora_output_under_autocast():
    """With the cast off the adapter computes what it computed with it (bf16 -> fp32 -> bf16
    is exact), without the copies."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ftune.training.adapter_inputs import adapter_inputs_uncast

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 16))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["0", "1"], init_lora_weights=False))
    x = torch.randn(3, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = model(x)
        with adapter_inputs_uncast(model, autocast=True):
            uncast = model(x)
    assert cast.dtype == uncast.dtype == torch.bfloat16
    assert torch.equal(cast, uncast)


def test_adapters_with_input_dropout_keep_the_cast():
    """Dropout on the fp32 copy and on bf16 draw other masks: a different run, so kept."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ftune.training.adapter_inputs import adapter_inputs_uncast

    base = torch.nn.Sequential(torch.nn.Linear(16, 16))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["0"], lora_dropout=0.1))
    with adapter_inputs_uncast(model, autocast=True):
        assert model.base_model.model[0].cast_input_dtype_enabled
