"""Collators: padding never hides a trained EOS, and padding-free packing keeps sequences apart."""

from __future__ import annotations

import pytest
import torch

from ftune.data.collate import PaddedCausalCollator, PaddingFreeCollator
from ftune.data.conversation import Message
from ftune.data.masking import IGNORE_INDEX, encode_conversation
from ftune.data.templates import resolve_template
from tests.unit.test_templates_masking import MULTI, SINGLE, build_tiny_tokenizer, load_smollm2_tokenizer


def features(tok, template_name: str = "chatml") -> list[dict[str, list[int]]]:
    template = resolve_template(template_name, tok)
    third = [Message("user", "What colour is the sky?"), Message("assistant", "Blue.")]
    return [vars(encode_conversation(conversation, template, tok, 1024)) for conversation in (SINGLE, MULTI, third)]


def test_padded_collator_pads_right_and_masks_from_lengths():
    batch = PaddedCausalCollator(pad_token_id=0, pad_to_multiple_of=8)(
        [{"input_ids": [5, 0, 7], "labels": [-100, 0, 7]}, {"input_ids": [5, 6], "labels": [-100, 6]}])
    assert batch["input_ids"].shape == (2, 8) and batch["input_ids"].dtype == torch.long
    # A real token equal to the pad id (row 0, position 1) stays attended and trained.
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist()[0] == [-100, 0, 7] + [-100] * 5
    assert batch["input_ids"].tolist()[1] == [5, 6] + [0] * 6


def test_pad_equals_eos_trap_smollm2_keeps_the_eos_trained():
    tok = load_smollm2_tokenizer()
    assert tok.pad_token_id == tok.eos_token_id == 2
    single, multi, _ = features(tok, "chat")
    batch = PaddedCausalCollator.from_tokenizer(tok)([single, multi])
    short = len(single["input_ids"])
    assert short < len(multi["input_ids"])
    # chat template: the reply ends "...<|im_end|>\n"; the <|im_end|> (id 2) before the "\n" is trained.
    row_ids, row_labels, row_attention = (batch[k][0].tolist() for k in ("input_ids", "labels", "attention_mask"))
    eos_position = short - 2
    assert row_ids[eos_position] == 2 and row_labels[eos_position] == 2 and row_attention[eos_position] == 1
    assert row_ids[short:] == [2] * (len(row_ids) - short)  # padding is the same id ...
    assert set(row_labels[short:]) == {IGNORE_INDEX} and set(row_attention[short:]) == {0}  # ... but masked
    # alpaca: the sequence ends with the trained EOS itself, right before the padding.
    single, multi, _ = features(tok, "alpaca")
    batch = PaddedCausalCollator.from_tokenizer(tok)([single, multi])
    short = len(single["input_ids"])
    assert batch["labels"][0, short - 1].item() == 2 and batch["attention_mask"][0, short - 1].item() == 1
    assert batch["labels"][0, short:].eq(IGNORE_INDEX).all() and batch["attention_mask"][0, short:].eq(0).all()


def test_padding_free_collator_flattens_with_restarting_positions():
    tok = build_tiny_tokenizer()
    feats = features(tok)
    batch = PaddingFreeCollator()(feats)
    lengths = [len(f["input_ids"]) for f in feats]
    assert set(batch) == {"input_ids", "labels", "position_ids"}  # no attention_mask
    assert batch["input_ids"].shape == (1, sum(lengths))
    assert batch["position_ids"][0].tolist() == [i for n in lengths for i in range(n)]
    starts = [sum(lengths[:k]) for k in range(len(lengths))]
    expected_labels = [label for f in feats for label in [IGNORE_INDEX] + f["labels"][1:]]
    assert batch["labels"][0].tolist() == expected_labels
    assert all(batch["labels"][0, s].item() == IGNORE_INDEX for s in starts)


def tiny_llama(tok, attn_implementation: str, use_cache: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         use_cache=use_cache, attn_implementation=attn_implementation)
    return LlamaForCausalLM(config).eval()


def trained_loss(model, batch) -> torch.Tensor:
    """Sum of next-token cross-entropy over trained tokens / their count."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                               ignore_index=IGNORE_INDEX, reduction="sum")
    return losses / labels.ne(IGNORE_INDEX).sum()


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_packed_loss_equals_padded_and_one_by_one_loss(attn_implementation):
    tok = build_tiny_tokenizer()
    feats = features(tok)
    model = tiny_llama(tok, attn_implementation, use_cache=False)  # as under the Trainer (use_cache=False)
    with torch.no_grad():
        packed = trained_loss(model, PaddingFreeCollator()(feats))
        padded = trained_loss(model, PaddedCausalCollator(pad_token_id=0)(feats))
        sums = [trained_loss(model, PaddedCausalCollator(0)([f])) * (sum(x != IGNORE_INDEX for x in f["labels"][1:]))
                for f in feats]
        one_by_one = sum(sums) / sum(sum(x != IGNORE_INDEX for x in f["labels"][1:]) for f in feats)
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-5)
    torch.testing.assert_close(packed, one_by_one, rtol=0, atol=1e-5)


def test_packed_sequences_leak_when_the_model_keeps_a_kv_cache():
    # Pins why PaddingFreeCollator needs use_cache=False: transformers 5.24 only derives the
    # per-sequence mask from position_ids when no cache exists. If this starts failing, a newer
    # transformers keeps packed sequences apart even with a cache and the caveat can go.
    tok = build_tiny_tokenizer()
    feats = features(tok)
    model = tiny_llama(tok, "sdpa", use_cache=True)
    with torch.no_grad():
        packed = trained_loss(model, PaddingFreeCollator()(feats))
        padded = trained_loss(model, PaddedCausalCollator(pad_token_id=0)(feats))
        packed_no_cache = trained_loss(model, {**PaddingFreeCollator()(feats), "use_cache": False})
    assert (packed - padded).abs() > 1e-4
    torch.testing.assert_close(packed_no_cache, padded, rtol=0, atol=1e-5)
