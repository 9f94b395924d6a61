"""The memory planner's arithmetic, batch splitting, and log-probabilities without full logits."""

from __future__ import annotations

import pytest
import torch

from ftune.config.units import parse_memory_size
from ftune.training.memory_plan import GB, MB, ActivationCost, MemoryPlanError, PlanInputs, make_plan
from ftune.training.memory_probe import measure_activations
from ftune.training.micro_batch import padded_tokens, split_batch


def inputs(**changes) -> PlanInputs:
    values = dict(baseline_bytes=1 * GB, trainable_parameters=1_000_000,
                  activations=ActivationCost(constant=0, per_token=1 * MB, per_square=0),
                  head_bytes=100 * MB, rows_per_batch=16, rows_per_unit=1, longest_row=600, layers=30, hidden_size=576)
    values.update(changes)
    return PlanInputs(**values)


def test_a_batch_that_fits_runs_whole():
    plan = make_plan(inputs(), 100 * GB, "test")
    assert plan.micro_batch_tokens is None and not plan.gradient_checkpointing
    assert plan.longest_batch_tokens == 16 * 600
    # 9,600 tokens x 1 MB x the backward factor, on top of the fixed part
    assert 1 * GB + 9600 * MB < plan.estimate_mb * MB < 1 * GB + 2 * 9600 * MB


def test_a_batch_over_the_budget_is_split_into_passes_that_fit():
    plan = make_plan(inputs(), 6 * GB, "test")
    assert plan.micro_batch_tokens is not None and 600 <= plan.micro_batch_tokens < 16 * 600
    assert plan.estimate_mb * MB <= 6 * GB
    assert not plan.gradient_checkpointing  # micro-batches first: they cost no recomputation


def test_when_one_row_does_not_fit_checkpointing_is_turned_on():
    big_rows = inputs(activations=ActivationCost(0, 8 * MB, 0))  # one 600-token row: ~8 GB with the factor
    plan = make_plan(big_rows, 4 * GB, "test")
    assert plan.gradient_checkpointing and plan.micro_batch_tokens >= 600
    assert plan.estimate_mb * MB <= 4 * GB


def test_when_nothing_fits_the_error_names_the_numbers_and_what_would_help():
    with pytest.raises(MemoryPlanError) as caught:
        make_plan(inputs(baseline_bytes=3 * GB), 2 * GB, "train.memory_limit=2GB")
    message = str(caught.value)
    assert "train.memory_limit=2GB" in message and "2.0 GB" in message and "3.0 GB" in message
    assert "model.max_length" in message and "method=lora" in message


def test_preference_pairs_are_never_split_apart():
    pairs = inputs(rows_per_batch=32, rows_per_unit=2)
    plan = make_plan(pairs, 3 * GB, "test")
    assert plan.micro_batch_tokens >= 2 * 600


def test_cpu_passes_are_capped_even_when_memory_would_allow_more():
    plan = make_plan(inputs(), 100 * GB, "test", max_pass_tokens=4096)
    assert plan.micro_batch_tokens == 4096
    long_pairs = make_plan(inputs(rows_per_unit=2, longest_row=3000), 100 * GB, "test", max_pass_tokens=4096)
    assert long_pairs.micro_batch_tokens >= 6000  # one pair is the smallest pass


def test_packed_batches_are_priced_as_one_long_row():
    quadratic = inputs(activations=ActivationCost(0, 1 * MB, 1000), packed=True)
    plan = make_plan(quadratic, 8 * GB, "test")
    assert plan.micro_batch_tokens is not None and plan.micro_batch_tokens >= 600
    assert quadratic.activations.bytes(1, plan.micro_batch_tokens) * 1.6 <= 8 * GB


@pytest.mark.parametrize("text, expected", [("16GB", 16 * GB), ("900 MB", 900 * MB), ("1.5G", 1.5 * GB),
                                            ("2GiB", 2 * GB), (12, 12 * GB)])
def test_memory_sizes(text, expected):
    assert parse_memory_size(text) == expected


def test_memory_size_errors():
    with pytest.raises(ValueError):
        parse_memory_size("lots")


def test_activation_probe_fits_what_autograd_keeps():
    """A toy model whose saved tensors are known: per token, one [hidden] input per layer."""

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 16)
            self.layers = torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(3))

        def forward(self, ids, mask):
            x = self.embed(ids)
            for layer in self.layers:
                x = layer(x)  # saves its input: tokens x 16 floats
            return x

    toy = Toy()
    cost = measure_activations(lambda ids, mask: toy(ids, mask), 50, "cpu", list(toy.parameters()))
    assert cost.per_token == pytest.approx(3 * 16 * 4, rel=0.05)
    assert cost.per_square == pytest.approx(0, abs=1e-6)


# --- splitting -------------------------------------------------------------------------------

def padded(lengths: list[int]) -> dict[str, torch.Tensor]:
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.arange(1, n + 1) + 100 * row
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.clone()}


def test_split_keeps_every_row_once_within_the_cap_and_trims_padding():
    batch = padded([10, 9, 7, 4, 3, 2])
    pieces = split_batch(batch, max_tokens=20)
    assert all(padded_tokens(p) <= 20 for p, _ in pieces) and len(pieces) > 1
    rows = [tuple(r[r > 0].tolist()) for p, _ in pieces for r in p["input_ids"]]
    assert sorted(rows) == sorted(tuple(r[r > 0].tolist()) for r in batch["input_ids"])
    assert sum(share for _, share in pieces) == pytest.approx(1.0)
    assert pieces[-1][0]["input_ids"].shape[1] < 10  # short rows are not padded to the longest


def test_a_single_row_over_the_cap_stays_whole():
    pieces = split_batch(padded([30, 5]), max_tokens=20)
    assert [p["input_ids"].shape[0] for p, _ in pieces] == [1, 1]


def test_pairs_stay_together_chosen_rows_first():
    # 3 pairs: rows 0-2 chosen, rows 3-5 the matching rejected
    batch = padded([8, 6, 4, 7, 6, 3])
    batch["ref_chosen_logps"] = torch.tensor([0.0, 1.0, 2.0])
    pieces = split_batch(batch, max_tokens=20, pairs=True)
    assert len(pieces) > 1
    for piece, share in pieces:
        ids = piece["input_ids"]
        half = ids.shape[0] // 2
        for k in range(half):  # row k and row k + half come from the same pair
            chosen_pair = int(ids[k, 0]) // 100
            rejected_pair = int(ids[k + half, 0]) // 100 - 3
            assert chosen_pair == rejected_pair == int(piece["ref_chosen_logps"][k])
        assert share == pytest.approx(half / 3)


def test_packed_rows_are_split_at_sequence_boundaries():
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]])
    batch = {"input_ids": torch.arange(12).unsqueeze(0), "labels": torch.arange(12).unsqueeze(0),
             "position_ids": positions}
    pieces = split_batch(batch, max_tokens=8)
    assert [p["position_ids"][0, 0].item() for p, _ in pieces] == [0] * len(pieces)
    assert torch.cat([p["input_ids"] for p, _ in pieces], dim=1).tolist() == batch["input_ids"].tolist()
    assert sum(share for _, share in pieces) == pytest.approx(1.0)


# --- the LM head at the scored positions only --------------------------------------------------

@pytest.mark.parametrize("technique", ["none", "lora", "prompt"])
def test_target_logps_equal_full_logits_with_gradients(tiny_llama_dir, technique):
    from peft import LoraConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftune.models.lm_head import shifted_token_logps

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    if technique == "lora":
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    elif technique == "prompt":
        model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    model.eval()
    torch.manual_seed(0)
    ids = torch.randint(5, 60, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :4] = -100  # the prompt

    def reference():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -ids.shape[1]:]
        logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        scored = labels[:, 1:] != -100
        return logps[scored].gather(-1, labels[:, 1:][scored].unsqueeze(-1)).squeeze(-1)

    expected = reference()
    weights = torch.rand(expected.shape)  # each token's own upstream gradient, as a loss weights them
    (expected * weights).sum().backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    got, scored = shifted_token_logps(model, {"input_ids": ids, "attention_mask": mask}, labels, chunk_tokens=5)
    assert int(scored.sum()) == got.numel() == expected.numel()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    (got * weights).sum().backward()
    assert expected_grads
    for name, grad in expected_grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-5)
    # the head is back in place afterwards
    assert isinstance(model.get_output_embeddings(), torch.nn.Linear)


def test_a_frozen_head_under_bf16_autocast_gives_the_checkpointed_gradients(tiny_llama_dir, monkeypatch):
    """The frozen-head path (gradients computed with the logits) against the checkpointed one,
    both under bf16 autocast; and only the frozen head takes it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftune.models import lm_head
    from ftune.models.lm_head import FrozenHeadLogps, shifted_token_logps

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    torch.manual_seed(0)
    ids = torch.randint(5, 60, (2, 12))
    labels = ids.clone()
    weights = torch.rand(2 * 11)
    calls = []
    original = FrozenHeadLogps.apply
    monkeypatch.setattr(FrozenHeadLogps, "apply", lambda *a: calls.append(1) or original(*a))

    def run():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logps, _ = shifted_token_logps(model, {"input_ids": ids}, labels, chunk_tokens=5)
        (logps * weights).sum().backward()
        return logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fused, fused_grads = run()
    assert calls == [1]
    monkeypatch.setattr(lm_head, "_frozen_linear_head", lambda head, hidden: False)
    checkpointed, checkpointed_grads = run()
    assert calls == [1]
    torch.testing.assert_close(fused, checkpointed, rtol=0, atol=0)  # the same bf16 matmul, the same logits
    assert fused_grads.keys() == checkpointed_grads.keys() and fused_grads
    for name, grad in checkpointed_grads.items():  # bf16 rounding of the scaled gradient apart
        assert (fused_grads[name] - grad).norm() <= 2e-2 * grad.norm(), name


def test_the_frozen_head_s_cast_is_made_once_and_follows_changes_to_the_weight():
    from ftune.models import lm_head

    head = torch.nn.Linear(8, 30, bias=False).requires_grad_(False)
    hidden = torch.randn(7, 8, requires_grad=True)
    targets = torch.randint(0, 30, (7,))

    def logps():
        return lm_head.FrozenHeadLogps.apply(hidden, head.weight, targets, 3, torch.bfloat16).detach()

    def expected():
        logits = (hidden.detach().to(torch.bfloat16) @ head.weight.to(torch.bfloat16).t()).float()
        return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    first = logps()
    cast = lm_head._casts[head.weight][3]
    torch.testing.assert_close(first, expected(), rtol=0, atol=0)
    logps()
    assert lm_head._casts[head.weight][3] is cast  # kept, not cast again
    with torch.no_grad():
        head.weight.mul_(1.5)  # an in-place change bumps the weight's version
    torch.testing.assert_close(logps(), expected(), rtol=0, atol=0)
    assert lm_head._casts[head.weight][3] is not cast


def test_no_generation_samples_when_none_are_asked_for():
    """generate.samples=0 once generated a reply for every held-out prompt (minutes per run)."""
    from ftune.data.conversation import Conversation, Message
    from ftune.recipes.sft import sample_prompts

    held_out = [Conversation([Message("user", f"q{i}"), Message("assistant", f"a{i}")]) for i in range(5)]
    assert sample_prompts(held_out, 0) == []
    assert len(sample_prompts(held_out, 2)) == 2
