"""Fit a built trainer to the memory budget before training: measure, plan, apply the plan,
then run the longest batch once (forward and backward, no weight update) and re-plan once if
it took more than planned. Everything here happens before the run directory exists."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Sequence

from ftune.config import Config
from ftune.training.adapter_inputs import adapter_inputs_uncast
from ftune.training.freed_memory import hold_to_plan
from ftune.training.frozen_weights import autocast_dtype, frozen_weights_in
from ftune.training.kernels import training_kernels
from ftune.training.memory_plan import (CPU_PASS_TOKENS, MB, SAFETY_BYTES, TRAINABLE_STATE_BYTES, ActivationCost,
                                        MemoryPlan, PlanInputs, make_plan)
from ftune.training.memory_probe import measure_activations, memory_budget, process_bytes
from ftune.training.short_attention import square_term_until

# TRL's fused DPO head works on tiles of up to 4,096 tokens x 32,768 vocabulary entries (fp32).
# Without Triton (on CPU) each tile is processed with whole-tile torch operations: the
# backward pass holds about seven tile-sized temporaries at once (logits, log-probabilities,
# probabilities, the target mask as floats, the gradient and its products).
_TRL_TILE = (4096, 32768)
_TRL_TILE_COPIES = 7


@dataclass
class BatchShape:
    """What the planner needs of the data: each training example's length in tokens."""

    lengths: Sequence[int]
    batch_size: int
    rows_per_example: int = 1  # 2 for a preference pair (chosen and rejected rows)
    packed: bool = False  # padding-free: a batch is one row of concatenated sequences


def fit_to_memory(config: Config, trainer, prepared, shape: BatchShape, head: str, echo=print) -> MemoryPlan | None:
    """Plan and apply. ``head`` is "classifier", "chunked" (ftune's SFT loss) or "trl" (DPO).
    Returns None where the free memory cannot be read (no plan, training runs as configured).
    Measures with the frozen weights stored as training will store them (in the autocast
    dtype, ``ftune.training.frozen_weights``), in fp32 again when it returns."""
    with frozen_weights_in(prepared.model, autocast_dtype(trainer.args), trainer.args.world_size):
        return _fit_to_memory(config, trainer, prepared, shape, head, echo)


def _fit_to_memory(config: Config, trainer, prepared, shape: BatchShape, head: str, echo) -> MemoryPlan | None:
    model = prepared.model
    device = prepared.plan.device
    baseline = process_bytes(device)
    budget = memory_budget(config.train.memory_limit, device, baseline)
    if budget is None:
        echo("ftune: free memory cannot be read here; training runs without a memory plan")
        return None
    inputs = PlanInputs(
        baseline_bytes=baseline, trainable_parameters=prepared.trainable,
        activations=_activation_cost(model, head, device, lambda: _as_in_training(trainer)),
        head_bytes=_head_bytes(model, head), rows_per_batch=shape.batch_size * shape.rows_per_example,
        rows_per_unit=shape.rows_per_example, longest_row=max(shape.lengths), packed=shape.packed,
        layers=_text_config(model, "num_hidden_layers", 1), hidden_size=_text_config(model, "hidden_size", 0))
    checkpointing = bool(config.train.gradient_checkpointing)
    pass_tokens = CPU_PASS_TOKENS if device == "cpu" else None
    plan = make_plan(inputs, budget[0], budget[1], checkpointing=checkpointing, max_pass_tokens=pass_tokens)
    _apply(trainer, model, plan, shape)
    echo(f"ftune: {plan.describe()}")

    measured = check_longest_batch(trainer, shape, plan, device, echo)
    plan.check_peak_mb = round(measured / MB, 1)
    # The check holds gradients but not yet AdamW's moments or the best-weights copy.
    not_yet_held = prepared.trainable * (TRAINABLE_STATE_BYTES - 4)
    if measured > plan.estimate_mb * MB - not_yet_held:
        # The estimate was low: scale the activation cost by what the step really took, once.
        measured_activations = measured - (inputs.fixed_bytes() - not_yet_held - SAFETY_BYTES)
        estimated_activations = plan.parts_mb["activations"] * MB
        factor = max(1.0, measured_activations / max(estimated_activations, 1.0)) * 1.1
        inputs.activations = inputs.activations.scaled(factor)
        replanned = make_plan(inputs, budget[0], budget[1], checkpointing=plan.gradient_checkpointing,
                              max_pass_tokens=pass_tokens)
        replanned.replanned, replanned.check_peak_mb = True, plan.check_peak_mb
        replanned.first_estimate_mb = round(plan.estimate_mb, 1)
        plan = replanned
        _apply(trainer, model, plan, shape)
        echo(f"ftune: the longest batch took {measured / MB:,.0f} MB, more than planned; re-planned: {plan.describe()}")
    return plan


def check_longest_batch(trainer, shape: BatchShape, plan: MemoryPlan, device: str, echo=print) -> float:
    """Forward and backward on the largest micro-batch of the longest batch, gradients then
    cleared and RNG restored; returns the process's peak memory (bytes) during it."""
    import torch

    from ftune.training.memory import peak_memory_mb, reset_peak_memory
    from ftune.training.micro_batch import padded_tokens, split_batch

    dataset = trainer.train_dataset
    order = sorted(range(len(shape.lengths)), key=lambda i: -shape.lengths[i])[: shape.batch_size]
    batch = trainer.data_collator([dataset[i] for i in order])
    pieces = split_batch(batch, plan.micro_batch_tokens, shape.rows_per_example == 2)
    piece = max((p for p, _ in pieces), key=padded_tokens)
    echo(f"ftune: checking memory on the longest batch ({padded_tokens(piece):,} tokens per pass) ...")
    piece = {k: (v.to(trainer.args.device) if torch.is_tensor(v) else v) for k, v in piece.items()}
    model = trainer.model
    model.train()
    reset_peak_memory(device)
    # under the autocast training will use (accelerate applies it only once training starts):
    # measured in fp32, a bf16 run's check would hold about twice the activations it trains with
    with torch.random.fork_rng(devices=[] if device == "cpu" else None), _as_in_training(trainer):
        loss = trainer.compute_loss(model, piece)
        loss.backward()
    del loss
    peak = peak_memory_mb(device) * MB
    for parameter in model.parameters():
        parameter.grad = None
    return peak


@contextmanager
def _as_in_training(trainer):
    """The precision and kernels of the trainer's training steps: its autocast, adapters taking
    their inputs uncast under it, ``training_kernels`` (what ``trainer.train()`` sets up once it
    starts)."""
    with trainer.accelerator.autocast(), adapter_inputs_uncast(trainer.model, trainer.args.bf16 or trainer.args.fp16), \
            training_kernels(trainer.model):
        yield


def _apply(trainer, model, plan: MemoryPlan, shape: BatchShape) -> None:
    hold_to_plan(trainer, plan.estimate_mb * MB)  # on a CPU, freed memory goes back above it
    trainer.micro_batch_tokens = plan.micro_batch_tokens
    trainer.pair_rows = shape.rows_per_example == 2
    if plan.gradient_checkpointing:  # enabling twice is harmless
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _activation_cost(model, head: str, device: str, autocast) -> ActivationCost:
    """What one training pass saves per token, measured under ``autocast`` (the trainer's
    mixed precision: bf16 activations take half the memory of fp32 ones)."""
    from ftune.models.lm_head import lm_head_removed

    def forward(input_ids, attention_mask):
        with autocast():
            if head == "classifier":
                return model(input_ids=input_ids, attention_mask=attention_mask).logits
            with lm_head_removed(model):
                return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    was_training = model.training
    model.train()
    try:
        lengths = _probe_lengths(model)
        cost = measure_activations(forward, _text_config(model, "vocab_size", 1000), device, list(model.parameters()),
                                   lengths)
        return replace(cost, square_until=square_term_until(model, device, max(lengths)))
    finally:
        model.train(was_training)


def _probe_lengths(model) -> tuple[int, int, int]:
    """Widths of the synthetic batches: 32, 64 and 128 tokens, or less where the model's
    positions (less a prompt-learning technique's virtual tokens) run out first."""
    peft_config = getattr(model, "active_peft_config", None)
    virtual = peft_config.num_virtual_tokens if getattr(peft_config, "is_prompt_learning", False) else 0
    positions = _text_config(model, "max_position_embeddings", 0)
    room = positions - virtual if positions else 128
    return (32, 64, 128) if room >= 128 else (max(2, room // 4), max(3, room // 2), max(4, room))


def _head_bytes(model, head: str) -> float:
    from ftune.models.lm_head import chunk_bytes

    vocab = _text_config(model, "vocab_size", 0)
    if head == "chunked":
        return float(chunk_bytes(vocab))
    if head == "trl":
        return float(_TRL_TILE_COPIES * _TRL_TILE[0] * min(vocab, _TRL_TILE[1]) * 4)
    return 0.0


def _text_config(model, key: str, default: int) -> int:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return int(getattr(config, key, default) or default)

