"""Short rows' attention in plain matmuls (ftune.training.short_attention): the same outputs and
gradients as SDPA, used only where it applies, and the stock function back afterwards."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ftune.training import short_attention
from ftune.training.short_attention import (BLOCK_QUERIES, CAUSAL_ROW_TOKENS, SHORT_ROW_TOKENS, ShortRowAttention,
                                            short_row_attention)


def _padded_causal(lengths: list[int], width: int) -> torch.Tensor:
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    keys = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return causal[None, None] & keys[:, None, None, :]


def _outputs_and_grads(attend, dtype, allowed):
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 20, 16, dtype=torch.float64) for _ in range(3))
    weights = torch.randn(3, 4, 20, 16, dtype=torch.float64)
    q, k, v = (x.to(dtype).requires_grad_() for x in (q, k, v))
    out = attend(q, k, v, allowed)
    (out.double() * weights).sum().backward()
    return [out.double()] + [x.grad.double() for x in (q, k, v)]


@pytest.mark.parametrize("lengths", [[20, 20, 20], [20, 13, 5]])
def test_outputs_and_gradients_match_sdpa(lengths):
    allowed = _padded_causal(lengths, 20)
    reference = _outputs_and_grads(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                                   torch.float64, allowed)
    ours = _outputs_and_grads(lambda q, k, v, m: ShortRowAttention.apply(q, k, v, m, 16 ** -0.5),
                              torch.float64, allowed)
    for got, want in zip(ours, reference):
        # the scores and softmax run in fp32 whatever the inputs: fp32 rounding, not fp64
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    low = _outputs_and_grads(lambda q, k, v, m: ShortRowAttention.apply(q, k, v, m, 16 ** -0.5),
                             torch.bfloat16, allowed)
    for got, want in zip(low, reference):  # bf16 inputs: within bf16 rounding of the exact values
        assert (got - want).norm() / want.norm() < 2e-2


def test_a_query_allowed_no_key_gets_zeros_not_nan():
    allowed = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    allowed[..., 2:, :] = True
    q, k, v = (torch.randn(1, 2, 4, 8, requires_grad=True) for _ in range(3))
    out = ShortRowAttention.apply(q, k, v, allowed, 8 ** -0.5)
    out.sum().backward()
    assert torch.equal(out[:, :, :2], torch.zeros_like(out[:, :, :2]))
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def _tiny_llama(layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def _loss_and_grads(model, ids, mask):
    model.zero_grad()
    labels = ids if mask is None else ids.masked_fill(mask == 0, -100)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_a_model_trains_the_same_with_short_rows_attention():
    """A tiny Llama (grouped-query heads, a padded row) gives the same loss and gradients."""
    model = _tiny_llama()
    ids = torch.randint(0, 64, (2, 24))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    calls = []
    original = ShortRowAttention.apply
    stock_loss, stock_grads = _loss_and_grads(model, ids, mask)
    with short_row_attention(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(ShortRowAttention, "apply", lambda *a: calls.append(a[0].shape) or original(*a))
        loss, grads = _loss_and_grads(model, ids, mask)
    assert len(calls) == 2  # one per layer: the short path ran
    torch.testing.assert_close(loss, stock_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, stock_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("padded", [False, True])
def test_a_causal_row_longer_than_a_block_is_computed_in_query_blocks_with_sdpa_s_results(padded):
    """Each block of queries against the keys up to its last query: the same loss and
    gradients as SDPA over the whole square, with and without a padding mask."""
    model = _tiny_llama(layers=1)
    width = 2 * BLOCK_QUERIES + 45
    assert width > SHORT_ROW_TOKENS
    ids = torch.randint(0, 64, (2, width))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 200:] = 0
    calls = []
    original = ShortRowAttention.apply
    stock_loss, stock_grads = _loss_and_grads(model, ids, mask if padded else None)
    with short_row_attention(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(ShortRowAttention, "apply", lambda *a: calls.append(tuple(a[1].shape[2:3])) or original(*a))
        loss, grads = _loss_and_grads(model, ids, mask if padded else None)
    assert calls == [(100,), (200,), (width,)]  # 3 blocks of queries, each against keys up to its last
    torch.testing.assert_close(loss, stock_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, stock_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_dropout_on_the_probabilities_matches_the_same_mask_applied_by_hand(monkeypatch):
    torch.manual_seed(3)
    allowed = _padded_causal([20, 13, 5], 20)
    keep = torch.rand(3, 4, 20, 20) > 0.3
    scale = 1 / 0.7
    monkeypatch.setattr(short_attention, "keep_mask", lambda shape, p: (keep, scale))

    def by_hand(q, k, v, m):
        scores = (q @ k.transpose(-1, -2) * 16 ** -0.5).masked_fill(~m, float("-inf"))
        return (torch.softmax(scores, -1) * keep * scale) @ v

    reference = _outputs_and_grads(by_hand, torch.float64, allowed)
    ours = _outputs_and_grads(lambda q, k, v, m: ShortRowAttention.apply(q, k, v, m, 16 ** -0.5, 0.3),
                              torch.float64, allowed)
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_long_rows_and_decoding_go_to_the_stock_kernel(monkeypatch):
    calls = []
    monkeypatch.setattr(ShortRowAttention, "apply", lambda *a: calls.append(1))
    model = _tiny_llama(layers=1)
    model.eval()
    with torch.no_grad():
        cache = model(input_ids=torch.randint(0, 64, (1, 8)), use_cache=True).past_key_values
    model.train()
    with short_row_attention():
        model(input_ids=torch.randint(0, 64, (1, CAUSAL_ROW_TOKENS + 1)))  # too long
        model.eval()
        with torch.no_grad():
            model(input_ids=torch.randint(0, 64, (1, 1)), past_key_values=cache)  # one new token
            model(input_ids=torch.randint(0, 64, (1, 3)), past_key_values=cache)  # keys longer than queries
    assert calls == []


def test_the_stock_function_is_back_when_the_outermost_block_ends():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    stock = ALL_ATTENTION_FUNCTIONS["sdpa"]
    with short_row_attention():
        routed = ALL_ATTENTION_FUNCTIONS["sdpa"]
        assert routed is not stock
        with short_row_attention():
            assert ALL_ATTENTION_FUNCTIONS["sdpa"] is routed
        assert ALL_ATTENTION_FUNCTIONS["sdpa"] is routed
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is stock
    with pytest.raises(RuntimeError), short_row_attention():
        raise RuntimeError("a failing step")
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is stock
    assert short_attention._depth == 0


def test_the_memory_plan_counts_the_probabilities_only_for_short_rows():
    from ftune.training.memory_plan import ActivationCost

    cost = ActivationCost(constant=0, per_token=100, per_square=10, square_until=SHORT_ROW_TOKENS)
    short, long = SHORT_ROW_TOKENS, SHORT_ROW_TOKENS + 1
    assert cost.bytes(2, short) == 2 * short * 100 + 10 * 2 * short * short
    assert cost.bytes(2, long) == 2 * long * 100  # the flash kernel keeps no score matrix
    # the worst piece of 1,000 tokens with rows up to 1,000 wide: rows at the bound, squares included
    assert cost.worst_within(1000, 1000) == 1000 * (100 + 10 * SHORT_ROW_TOKENS)
    assert cost.scaled(2).square_until == SHORT_ROW_TOKENS
    unbounded = ActivationCost(constant=0, per_token=100, per_square=10)
    assert unbounded.bytes(2, long) == 2 * long * 100 + 10 * 2 * long * long


def test_the_square_term_stops_only_where_the_short_path_runs():
    from peft import LoraConfig, get_peft_model

    from ftune.training.short_attention import square_term_until

    model = get_peft_model(_tiny_llama(layers=1), LoraConfig(r=2, target_modules=["q_proj"]))
    assert square_term_until(model, "cpu", 128) == CAUSAL_ROW_TOKENS  # a decoder: causal attention, in blocks
    assert square_term_until(model, "cuda", 128) is None  # SDPA's kernels there keep no score matrix at all
    assert square_term_until(model, "cpu", CAUSAL_ROW_TOKENS + 1) is None  # the probes did not measure the short path
    eager = _tiny_llama(layers=1)
    eager.config._attn_implementation = "eager"  # eager keeps its probabilities at every width
    assert square_term_until(eager, "cpu", 128) is None


def test_a_causal_module_called_without_mask_or_causality_attends_to_every_key():
    """No mask and is_causal=False: every key is allowed, so no block may skip any."""
    from types import SimpleNamespace

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, SHORT_ROW_TOKENS + 40, 8) for _ in range(3))
    module = SimpleNamespace(is_causal=True, num_key_value_groups=1)
    with short_row_attention():
        out, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](module, q, k, v, None, is_causal=False)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v).transpose(1, 2), rtol=1e-5, atol=1e-5)
