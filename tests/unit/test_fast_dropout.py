"""Dropout masks drawn 16 random bits an element (ftune.training.fast_dropout): each element kept
with probability 1 - p in every lane of the 64-bit draws, the kept ones scaled so the expectation
holds, the same mask in the backward pass, seeded runs repeated, and the modules routed only
while the block runs and only where it applies."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ftune.training import fast_dropout
from ftune.training.fast_dropout import dropout, fast_cpu_dropout, keep_mask


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_each_element_is_kept_with_probability_one_minus_p_in_every_lane(p):
    torch.manual_seed(0)
    count = 1 << 20
    keep, scale = keep_mask((count,), p)
    exact = round(p * 65536) / 65536  # p rounded to a 16-bit level
    assert abs(exact - p) <= 0.5 / 65536
    assert scale == pytest.approx(1 / (1 - exact))
    # each of the four 16-bit lanes of a 64-bit draw (a lane short of random bits would keep
    # all or none of its elements), within 6 standard deviations of 1 - p
    per_lane = keep.view(-1, 4).double().mean(0)
    sigma = math.sqrt(p * (1 - p) / (count / 4))
    assert ((per_lane - (1 - exact)).abs() < 6 * sigma).all(), per_lane
    # neighbouring elements are independent: both kept as often as (1 - p)^2
    pairs = (keep[:-1] & keep[1:]).double().mean().item()
    assert abs(pairs - (1 - exact) ** 2) < 6 * math.sqrt((1 - exact) ** 2 / count)


def test_kept_elements_are_scaled_and_the_gradient_uses_the_same_mask():
    torch.manual_seed(1)
    x = (torch.rand(6, 50, 32) + 0.5).requires_grad_()  # no zeros: a zero output means dropped
    weights = torch.randn(6, 50, 32)
    out = dropout(x, 0.2)
    kept = out != 0
    scale = 65536 / (65536 - round(0.2 * 65536))
    torch.testing.assert_close(out[kept], x[kept] * scale)
    assert 0.7 < kept.double().mean().item() < 0.9
    (out * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights * kept * scale)
    assert type(out.grad_fn).__name__ == "DropoutBackward"  # ours, not PyTorch's


def test_the_expectation_is_unchanged():
    torch.manual_seed(2)
    x = torch.full((1 << 20,), 3.0)
    assert dropout(x, 0.3).mean().item() == pytest.approx(3.0, rel=3e-3)


def test_a_seeded_run_repeats_its_masks_and_another_seed_draws_others():
    def mask(seed):
        torch.manual_seed(seed)
        return keep_mask((4, 1000), 0.1)[0]

    assert torch.equal(mask(7), mask(7))
    assert not torch.equal(mask(7), mask(8))


def test_p_that_rounds_to_nothing_or_everything_and_other_devices_keep_pytorch_s_dropout():
    x = torch.randn(10)
    assert fast_dropout.applies(x, 0.1)
    assert not fast_dropout.applies(x, 1e-6)  # 0 levels of 65,536
    assert not fast_dropout.applies(x, 1 - 1e-6)
    assert not fast_dropout.applies(torch.randn(10, device="meta"), 0.1)


class _Net(nn.Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.linear = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.25, inplace=inplace)
        self.off = nn.Dropout(0.0)

    def forward(self, x):
        return self.off(self.drop(self.linear(x)))


def _grad_fns(out) -> set[str]:
    seen, names, stack = set(), set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_modules_are_routed_only_in_training_only_inside_the_block_and_then_restored():
    net = _Net().train()
    x = torch.randn(4, 8)
    assert "DropoutBackward" not in _grad_fns(net(x))
    with fast_cpu_dropout(net):
        assert "forward" in vars(net.drop) and "forward" not in vars(net.off)  # p = 0: nothing to draw
        assert "DropoutBackward" in _grad_fns(net(x))
        net.eval()
        torch.testing.assert_close(net(x), net.linear(x))  # evaluation: no dropout at all
        net.train()
    assert "forward" not in vars(net.drop)
    assert "DropoutBackward" not in _grad_fns(net(x))


def test_in_place_dropout_keeps_pytorch_s():
    net = _Net(inplace=True).train()
    with fast_cpu_dropout(net):
        out = net(torch.randn(4, 8))
    assert "DropoutBackward" not in _grad_fns(out)


def test_training_kernels_route_a_bert_s_dropout_and_its_attention_dropout(monkeypatch):
    from transformers import BertConfig, BertForSequenceClassification

    from ftune.training.kernels import training_kernels
    from ftune.training.short_attention import ShortRowAttention

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, attn_implementation="sdpa")
    model = BertForSequenceClassification(config).train()
    dropouts = []
    monkeypatch.setattr(ShortRowAttention, "apply",
                        lambda *args: dropouts.append(args[-1]) or torch.zeros(2, 2, 6, 8, requires_grad=True))
    with training_kernels(model):
        out = model(input_ids=torch.randint(0, 50, (2, 6))).logits
    assert dropouts == [config.attention_probs_dropout_prob]  # attention dropout on the matmul path
    assert "DropoutBackward" in _grad_fns(out)
    assert all("forward" not in vars(m) for m in model.modules())

