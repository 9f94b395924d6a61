"""Plan a run's memory before its first step, so a run that cannot fit fails in seconds with a
message instead of being killed by the kernel an hour in.

The peak of a training step is estimated as

    process memory now (libraries, weights, data)
  + trainable state: gradient, AdamW's two moments and the best-weights copy, 16 bytes each
  + activations kept for the backward pass of the largest forward pass
  + the LM head's working set (one chunk of logits; none for a classifier)

Activations are measured, not guessed: the model (technique applied) runs a forward pass on
three short synthetic batches while ``torch.autograd.graph.saved_tensors_hooks`` adds up every
tensor autograd keeps. A fit of ``c + a * tokens + b * rows * width**2`` (the last term is
attention's score matrices; on a CPU only for rows short enough for ftune's matmul attention,
see ftune.training.short_attention) then prices any batch shape. A batch over the budget is run as
micro-batches of fewer tokens (same gradients), and when a single row does not fit, with
gradient checkpointing; when nothing fits, ``MemoryPlanError`` names the numbers and the
settings that would help.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ftune.errors import FtuneError

MB = 2**20
GB = 2**30
# On CPU a longer forward pass is no faster per token, it only takes memory: SmolLM2 LoRA SFT
# (bench/sft_throughput.py's ftune child) ran 2,048-token passes at 240 real tokens/s and 5.4 GB
# peak, 4,096-token ones at 223 tokens/s and 6.7 GB (repeats at 2,048 gave 220-222 tokens/s: within
# the +-10% spread between runs, so "no slower", at less memory).
CPU_PASS_TOKENS = 2048
SAFETY_BYTES = 256 * MB  # allocator slack, tokenizer buffers, the optimizer's temporaries
TRAINABLE_STATE_BYTES = 16  # fp32 gradient + AdamW exp_avg + exp_avg_sq + best-weights copy
DEFAULT_SHARE = 0.85


class MemoryPlanError(FtuneError):
    """Even the smallest plan does not fit the memory budget."""


@dataclass(frozen=True)
class ActivationCost:
    """Bytes autograd keeps for one forward pass: ``constant + per_token * rows * width +
    per_square * rows * width**2``, the square term only for rows of at most ``square_until``
    tokens where that is set (on a CPU, attention keeps its probabilities for short rows only,
    see ftune.training.short_attention; the flash kernel beyond keeps none)."""

    constant: float
    per_token: float
    per_square: float
    square_until: int | None = None

    def bytes(self, rows: int, width: int) -> float:
        square = self.per_square if self.square_until is None or width <= self.square_until else 0.0
        return self.constant + self.per_token * rows * width + square * rows * width * width

    def per_token_within(self, width: int) -> float:
        """The most one token of a row no wider than ``width`` can cost (rows x w**2 = tokens x w,
        and the square term stops at ``square_until``)."""
        square_width = width if self.square_until is None else min(width, self.square_until)
        return self.per_token + self.per_square * square_width

    def worst_within(self, max_tokens: int, width: int) -> float:
        """The most any piece of at most ``max_tokens`` padded tokens, rows no wider than
        ``width``, can cost."""
        return self.constant + max_tokens * self.per_token_within(width)

    def scaled(self, factor: float) -> "ActivationCost":
        return replace(self, constant=self.constant * factor, per_token=self.per_token * factor,
                       per_square=self.per_square * factor)


@dataclass
class MemoryPlan:
    budget_mb: float
    budget_source: str
    estimate_mb: float
    longest_batch_tokens: int  # padded tokens of the largest batch (rows x longest row)
    longest_row_tokens: int
    micro_batch_tokens: int | None  # None: every batch runs whole
    gradient_checkpointing: bool
    parts_mb: dict[str, float] = field(default_factory=dict)
    replanned: bool = False
    first_estimate_mb: float | None = None  # the estimate before a re-plan
    check_peak_mb: float | None = None  # measured on the longest batch before training

    def describe(self) -> str:
        shape = (f"micro-batches of ≤ {self.micro_batch_tokens:,} tokens (longest batch "
                 f"{self.longest_batch_tokens:,})" if self.micro_batch_tokens
                 else f"batches run whole (longest {self.longest_batch_tokens:,} tokens)")
        if self.gradient_checkpointing:
            shape += ", gradient checkpointing"
        return (f"memory plan: peak ≈ {format_size(self.estimate_mb)} of a {format_size(self.budget_mb)} budget "
                f"({self.budget_source}); {shape}")

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class PlanInputs:
    """Everything the plan depends on, measured once; ``make_plan`` is then pure arithmetic."""

    baseline_bytes: float  # the process now
    trainable_parameters: int
    activations: ActivationCost
    head_bytes: float  # LM-head working set per forward pass
    rows_per_batch: int  # rows of one batch as the model sees them (2 x pairs for DPO)
    rows_per_unit: int  # rows that must stay together (2 for a preference pair)
    longest_row: int  # for a packed batch (one row of many sequences): its longest sequence
    packed: bool = False
    layers: int = 1
    hidden_size: int = 0

    def fixed_bytes(self) -> float:
        return self.baseline_bytes + self.trainable_parameters * TRAINABLE_STATE_BYTES + self.head_bytes + SAFETY_BYTES

    def step_activation_bytes(self, rows: int, width: int, checkpointing: bool = False) -> float:
        """Resident bytes the activations of one forward/backward pass over ``rows`` x ``width`` take."""
        cost = self.checkpointed() if checkpointing else self.activations
        return cost.bytes(rows, width) * _backward_factor(self.layers)

    def checkpointed(self) -> ActivationCost:
        """With activation checkpointing each block keeps only its input; one block's full
        activations are rebuilt at a time in the backward pass (counted twice to be safe)."""
        a = self.activations
        per_layer = 2.0 / max(self.layers, 1)
        return replace(a, per_token=a.per_token * per_layer + self.layers * self.hidden_size * 4,
                       per_square=a.per_square * per_layer)


def _backward_factor(layers: int) -> float:
    """Resident memory per byte autograd saves. On top of the saved tensors, the backward pass
    holds gradients of about two blocks' activations, and the forward pass's freed temporaries
    stay resident in the C allocator's heap: one training step of SmolLM2 + LoRA measured
    1.0-1.5x its saved bytes (+0.35 GB) in peak RSS, varying with batch shape and from run to
    run. 1.6 keeps the plan on the safe side."""
    return 1.6 + 2.0 / max(layers, 1)


def make_plan(inputs: PlanInputs, budget_bytes: float, budget_source: str, checkpointing: bool = False,
              max_pass_tokens: int | None = None) -> MemoryPlan:
    """The fastest plan within ``budget_bytes``: whole batches, else micro-batches, else
    micro-batches with gradient checkpointing; ``MemoryPlanError`` when none fits.
    ``max_pass_tokens`` caps a forward pass even where memory would allow more (on CPU,
    longer passes are no faster per token and only take memory)."""
    fixed = inputs.fixed_bytes()
    longest = inputs.longest_row
    batch_tokens = inputs.rows_per_batch * longest
    unit_tokens = inputs.rows_per_unit * longest
    if max_pass_tokens:
        batch_tokens = min(batch_tokens, max(max_pass_tokens, unit_tokens))
    options = [(checkpointing, inputs.checkpointed() if checkpointing else inputs.activations)]
    if not checkpointing:
        options.append((True, inputs.checkpointed()))
    for use_checkpointing, cost in options:
        factor = _backward_factor(inputs.layers)
        if inputs.packed:  # one row as wide as the batch's tokens: attention is over all of it
            whole = cost.bytes(1, inputs.rows_per_batch * longest) * factor
            if fixed + whole <= budget_bytes and batch_tokens == inputs.rows_per_batch * longest:
                return _plan(inputs, budget_bytes, budget_source, fixed + whole, None, use_checkpointing, whole)
            cap = _packed_cap(cost, factor, budget_bytes - fixed, batch_tokens)
            if cap >= longest:
                activations = cost.bytes(1, cap) * factor
                return _plan(inputs, budget_bytes, budget_source, fixed + activations, cap, use_checkpointing,
                             activations)
            continue
        whole = cost.bytes(inputs.rows_per_batch, longest) * factor
        if fixed + whole <= budget_bytes and batch_tokens == inputs.rows_per_batch * longest:
            return _plan(inputs, budget_bytes, budget_source, fixed + whole, None, use_checkpointing, whole)
        room = budget_bytes - fixed - cost.constant * factor
        per_token = cost.per_token_within(longest) * factor
        cap = int(room / per_token) if per_token > 0 and room > 0 else 0
        if cap >= unit_tokens:
            cap = min(cap, batch_tokens)
            activations = cost.worst_within(cap, longest) * factor
            return _plan(inputs, budget_bytes, budget_source, fixed + activations, cap, use_checkpointing, activations)
    smallest = fixed + options[-1][1].bytes(inputs.rows_per_unit, longest) * _backward_factor(inputs.layers)
    raise MemoryPlanError(_no_fit_message(inputs, budget_bytes, budget_source, smallest))


def _packed_cap(cost: ActivationCost, factor: float, room: float, most: int) -> int:
    """The widest packed row whose activations fit in ``room`` bytes (bisection on width)."""
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        if cost.bytes(1, middle) * factor <= room:
            low = middle
        else:
            high = middle - 1
    return low


def _plan(inputs: PlanInputs, budget: float, source: str, estimate: float, cap: int | None, checkpointing: bool,
          activations: float) -> MemoryPlan:
    return MemoryPlan(
        budget_mb=budget / MB, budget_source=source, estimate_mb=estimate / MB,
        longest_batch_tokens=inputs.rows_per_batch * inputs.longest_row, longest_row_tokens=inputs.longest_row,
        micro_batch_tokens=cap, gradient_checkpointing=checkpointing,
        parts_mb={"process_before_training": round(inputs.baseline_bytes / MB, 1),
                  "trainable_state": round(inputs.trainable_parameters * TRAINABLE_STATE_BYTES / MB, 1),
                  "activations": round(activations / MB, 1), "lm_head": round(inputs.head_bytes / MB, 1),
                  "slack": round(SAFETY_BYTES / MB, 1)})


def _no_fit_message(inputs: PlanInputs, budget: float, source: str, smallest: float) -> str:
    state = inputs.trainable_parameters * TRAINABLE_STATE_BYTES
    lines = [f"training does not fit in memory: even one row of {inputs.longest_row:,} tokens with gradient "
             f"checkpointing needs about {format_size(smallest / MB)}, and the budget is {format_size(budget / MB)} ({source})."]
    if inputs.baseline_bytes > budget:
        lines.append(f"The process already holds {format_size(inputs.baseline_bytes / MB)} (libraries, model weights, data) "
                     "before training.")
    lines.append(f"Parts: process now {format_size(inputs.baseline_bytes / MB)}, gradients and optimizer state "
                 f"{format_size(state / MB)}, LM head {format_size(inputs.head_bytes / MB)}.")
    lines.append("What would help: a shorter model.max_length (longest row now "
                 f"{inputs.longest_row:,} tokens); fewer trainable parameters, e.g. method=lora or qlora"
                 f" ({inputs.trainable_parameters:,} train now); a smaller model; or, if more memory is "
                 "free than ftune assumes, a larger train.memory_limit (e.g. train.memory_limit=16GB).")
    return "\n".join(lines)


def format_size(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:,.0f} MB"


# --- measurements -------------------------------------------------------------------------
