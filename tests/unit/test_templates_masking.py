"""Chat templates and loss masks: only assistant replies and their end-of-turn tokens train.

Runs every template on two tokenizers: a tiny byte-level BPE built here (Llama-style: it adds
``<s>`` to plain text, its chat template writes ``{{ bos_token }}`` itself, and its
end-of-turn ``<|im_end|>`` differs from its EOS ``</s>``), and SmolLM2's real tokenizer
(pad = eos = ``<|im_end|>``, no BOS added) from the converted cache when present.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from ftune.data.conversation import Message
from ftune.data.masking import (IGNORE_INDEX, adds_bos, encode_conversation, encode_plain_text, encode_prompt,
                                render_inspection)
from ftune.data.templates import ALPACA_PREAMBLE, Template, register_template, resolve_template
from ftune.errors import FtuneError

SMOLLM2_DIR = Path("~/.cache/ftune/models/smollm2-135m").expanduser()
TINY_CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                      "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["Below is an instruction that describes a task. Write a response that appropriately completes "
          "the request.", "### Instruction: ### Response:", "system user assistant", "What colour is the sky?",
          "Blue. And grass? Green.", "Say hello to the world. Hello, world!", "You answer in one word."] * 3

SINGLE = [Message("user", "Say hello to the world."), Message("assistant", "Hello, world!")]
MULTI = [Message("system", "You answer in one word."), Message("user", "What colour is the sky?"),
         Message("assistant", "Blue."), Message("user", "And grass?"), Message("assistant", "Green.")]
CONVERSATIONS = {"single-turn": SINGLE, "multi-turn-with-system": MULTI}
TEMPLATES = ["chat", "chatml", "alpaca", "plain"]


@functools.lru_cache(maxsize=None)
def build_tiny_tokenizer():
    """A byte-level BPE (exact round trip) that adds <s> like Llama, with a ChatML-like template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


@functools.lru_cache(maxsize=None)
def load_smollm2_tokenizer():
    if not (SMOLLM2_DIR / "tokenizer.json").exists():
        pytest.skip(f"SmolLM2 not converted at {SMOLLM2_DIR} (run a command that converts the built-in model)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(SMOLLM2_DIR)


@pytest.fixture(params=["tiny", "smollm2"])
def tokenizer(request):
    return build_tiny_tokenizer() if request.param == "tiny" else load_smollm2_tokenizer()


def expected_text(name: str, messages: list[Message], tok) -> str:
    """The full rendering each template must produce, written out by hand (chat: the tokenizer's)."""
    if name == "chat":
        return tok.apply_chat_template([{"role": m.role, "content": m.content} for m in messages], tokenize=False)
    if name == "chatml":
        return "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
    eos = tok.eos_token
    if messages is SINGLE:
        return {"alpaca": f"{ALPACA_PREAMBLE}\n\n### Instruction:\nSay hello to the world.\n\n### Response:\n"
                          f"Hello, world!{eos}",
                "plain": f"Say hello to the world.\nHello, world!{eos}"}[name]
    return {"alpaca": f"You answer in one word.\n\n### Instruction:\nWhat colour is the sky?\n\n### Response:\n"
                      f"Blue.{eos}\n\n### Instruction:\nAnd grass?\n\n### Response:\nGreen.{eos}",
            "plain": f"You answer in one word.\nWhat colour is the sky?\nBlue.{eos}And grass?\nGreen.{eos}"}[name]


def trained_spans(encoded, tok) -> list[str]:
    """Decode each run of consecutive trained tokens."""
    spans, current = [], []
    for token, label in zip(encoded.input_ids, encoded.labels):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return [tok.decode(span, clean_up_tokenization_spaces=False) for span in spans]


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
@pytest.mark.parametrize("name", TEMPLATES)
def test_only_assistant_replies_and_end_of_turn_are_trained(name, conversation, tokenizer):
    messages = CONVERSATIONS[conversation]
    template = resolve_template(name, tokenizer)
    full = expected_text(name, messages, tokenizer)
    segments = template.render_segments(messages)
    assert "".join(s.text for s in segments) == full

    end_of_turn = "<|im_end|>" if name in ("chat", "chatml") else tokenizer.eos_token
    assert template.end_of_turn == end_of_turn
    replies = [m.content + end_of_turn for m in messages if m.role == "assistant"]
    assert [s.text for s in segments if s.trained] == replies

    encoded = encode_conversation(messages, template, tokenizer, max_length=1024)
    assert not encoded.truncated
    # Every token is accounted for: the decoded ids are the rendering (plus one BOS if the tokenizer adds it).
    bos = tokenizer.bos_token if adds_bos(tokenizer) and not full.startswith(tokenizer.bos_token) else ""
    assert tokenizer.decode(encoded.input_ids, clean_up_tokenization_spaces=False) == bos + full
    assert encoded.input_ids[:2] != [tokenizer.bos_token_id] * 2
    # Trained tokens decode to exactly the replies with their end-of-turn markers; labels equal the ids there.
    assert trained_spans(encoded, tokenizer) == replies
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(encoded.input_ids, encoded.labels))
    last_trained = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX][-1]
    assert tokenizer.convert_ids_to_tokens(last_trained) == end_of_turn  # one special token, trained

    # The generation prompt for each reply tokenizes like training did; within it only earlier replies train.
    earlier = 0
    for i, message in enumerate(messages):
        if message.role == "assistant":
            prompt = encode_prompt(messages[:i], template, tokenizer)
            assert encoded.input_ids[: len(prompt)] == prompt
            prefix = type(encoded)(prompt, encoded.labels[: len(prompt)], truncated=False)
            assert trained_spans(prefix, tokenizer) == replies[:earlier]
            assert encoded.labels[len(prompt) - 1] == IGNORE_INDEX != encoded.labels[len(prompt)]
            earlier += 1


@pytest.mark.parametrize("name", TEMPLATES)
def test_truncation_keeps_the_beginning_and_labels_aligned(name, tokenizer):
    template = resolve_template(name, tokenizer)
    whole = encode_conversation(MULTI, template, tokenizer, max_length=1024)
    exact = encode_conversation(MULTI, template, tokenizer, max_length=len(whole.input_ids))
    assert not exact.truncated and exact == whole
    cut = encode_conversation(MULTI, template, tokenizer, max_length=len(whole.input_ids) - 3)
    assert cut.truncated
    assert cut.input_ids == whole.input_ids[:-3] and cut.labels == whole.labels[:-3]


def test_smollm2_chat_template_injects_its_default_system_prompt_untrained():
    tok = load_smollm2_tokenizer()
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    assert not adds_bos(tok)  # plain tokenizer(text) adds nothing; <|im_start|> comes from the markup
    segments = resolve_template("chat", tok).render_segments(SINGLE)
    assert segments[0].text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert not segments[0].trained
    # With a system message SmolLM2's template is plain ChatML.
    chat = encode_conversation(MULTI, resolve_template("chat", tok), tok, 512)
    assert chat == encode_conversation(MULTI, resolve_template("chatml", tok), tok, 512)


def test_plain_text_trains_every_token_and_eos():
    tok = build_tiny_tokenizer()
    encoded = encode_plain_text("Hello, world!", tok, max_length=64)
    assert encoded.input_ids[0] == tok.bos_token_id and encoded.labels[0] == IGNORE_INDEX
    assert encoded.input_ids[-1] == tok.eos_token_id
    assert encoded.labels[1:] == encoded.input_ids[1:]
    cut = encode_plain_text("Hello, world!", tok, max_length=3)
    assert cut.truncated and cut.labels == encoded.labels[:3]


def test_inspection_marks_trained_spans_and_counts():
    tok = build_tiny_tokenizer()
    encoded = encode_conversation(MULTI, resolve_template("chatml", tok), tok, 1024)
    text = render_inspection(encoded, tok, color=False)
    assert "[[Blue.<|im_end|>]]" in text and "[[Green.<|im_end|>]]" in text and "[[And" not in text
    n, m = encoded.num_trained, len(encoded.input_ids)
    assert text.splitlines()[-1] == f"trained tokens: {n} / {m} (masked: {m - n})"
    assert "\x1b[" in render_inspection(encoded, tok, color=True)


def test_resolve_template_names_and_errors():
    tok = build_tiny_tokenizer()
    assert resolve_template("auto", tok).name == "chat"
    no_template = tok.__class__(tokenizer_object=tok.backend_tokenizer, eos_token="</s>")
    assert resolve_template("auto", no_template).name == "alpaca"
    with pytest.raises(FtuneError, match='Did you mean "chatml"'):
        resolve_template("chatlm", tok)
    with pytest.raises(FtuneError, match="no EOS"):
        resolve_template("alpaca", tok.__class__(tokenizer_object=tok.backend_tokenizer))
    with pytest.raises(ValueError, match="already registered"):
        register_template("chatml")(type("Again", (Template,), {}))


def test_chat_template_that_is_not_prefix_stable_is_refused():
    tok = build_tiny_tokenizer()
    counting = tok.__class__(tokenizer_object=tok.backend_tokenizer, eos_token="</s>")
    # Writes the number of messages first, so a shorter conversation is not a prefix of a longer one.
    counting.chat_template = "{{ messages|length }}" + TINY_CHAT_TEMPLATE
    with pytest.raises(FtuneError, match=r"data.template=chatml\|alpaca\|plain"):
        resolve_template("chat", counting)


def test_importing_data_modules_does_not_import_torch():
    code = ("import sys, ftune.data.templates, ftune.data.masking, ftune.data.collate; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
