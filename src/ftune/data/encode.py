"""Examples as model inputs: token ids with loss labels on the replies only, and the tokens
that end a reply. Shared by training (SFT) and evaluation."""

from __future__ import annotations


def encode_example(example, template, tokenizer, max_length: int):
    """An ``EncodedExample`` for a Conversation (template applied) or a PlainText; a
    PreferencePair counts as its chosen conversation (SFT on the preferred replies)."""
    from ftune.data.conversation import Message, PlainText, PreferencePair
    from ftune.data.masking import encode_conversation, encode_plain_text

    if isinstance(example, PlainText):
        return encode_plain_text(example.text, tokenizer, max_length)
    if isinstance(example, PreferencePair):
        messages = [*example.prompt, Message("assistant", example.chosen)]
    else:
        messages = example.messages
    return encode_conversation(messages, template, tokenizer, max_length)


def encode_examples(examples, template, tokenizer, max_length: int) -> tuple[list[dict[str, list[int]]], int]:
    """Token ids and labels for each example; returns (encoded, number truncated)."""
    encoded, truncated = [], 0
    for example in examples:
        item = encode_example(example, template, tokenizer, max_length)
        truncated += item.truncated
        if any(label != -100 for label in item.labels):  # nothing left to learn after truncation
            encoded.append({"input_ids": item.input_ids, "labels": item.labels})
    return encoded, truncated


class EncodedDataset:
    def __init__(self, items: list[dict[str, list[int]]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end a reply: EOS, and the chat end-of-turn token when it differs."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


def scored_examples(examples, template, tokenizer, max_length: int) -> list:
    """The examples ``encode_examples`` keeps (at least one scored token), in the same order."""
    return [example for example in examples
            if any(label != -100 for label in encode_example(example, template, tokenizer, max_length).labels)]
