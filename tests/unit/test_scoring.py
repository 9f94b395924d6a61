"""Batched completion scoring equals scoring one sequence at a time."""

from __future__ import annotations

import torch

from ftune.eval.scoring import completion_logps


def test_batched_scores_equal_one_by_one(tiny_llama_dir):
    from ftune.models.load import load_causal_lm

    task = load_causal_lm(str(tiny_llama_dir))
    encode = lambda text: task.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    pairs = [(encode("the cat is"), encode("on the table")), (encode("a warm and funny film that"), encode("good")),
             (encode("hi"), encode("the plot goes nowhere and the jokes are stale"))]
    one_by_one = [completion_logps(task.model, [pair], pad_id=2, batch_size=1)[0] for pair in pairs]
    batched = completion_logps(task.model, pairs, pad_id=2, batch_size=3)
    for (a, n_a), (b, n_b) in zip(one_by_one, batched):
        assert n_a == n_b and abs(a - b) < 1e-4
    # by hand for the first pair
    prompt, completion = pairs[0]
    with torch.no_grad():
        logits = task.model(torch.tensor([prompt + completion])).logits[0]
    logps = torch.log_softmax(logits, -1)
    expected = sum(float(logps[len(prompt) - 1 + k, t]) for k, t in enumerate(completion))
    assert abs(batched[0][0] - expected) < 1e-4


def test_long_preference_prompts_lose_their_oldest_turns_first():
    from ftune.data.conversation import Message, PreferencePair
    from ftune.data.templates import resolve_template
    from ftune.eval.preference import encode_pair, fit_prompt_turns
    from tests.unit.test_templates_masking import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    template = resolve_template("chatml", tokenizer)
    turns = [Message("system", "be kind")]
    for i in range(6):
        turns += [Message("user", f"question {i} " + "word " * 20), Message("assistant", f"answer {i} " + "word " * 20)]
    pair = PreferencePair(turns + [Message("user", "last question")], chosen="yes please", rejected="no")
    length = lambda p: len(tokenizer(template.render_prompt(p.prompt), add_special_tokens=False)["input_ids"])  # noqa: E731

    fitted = fit_prompt_turns(pair, template, tokenizer, max_length=length(pair) // 2)
    assert fitted.prompt[0] == Message("system", "be kind")  # kept
    assert fitted.prompt[-1] == Message("user", "last question")
    assert fitted.prompt[1].role == "user" and fitted.prompt[1:] == pair.prompt[-len(fitted.prompt) + 1:]
    assert length(fitted) <= length(pair) // 2 < length(pair)
    assert fit_prompt_turns(pair, template, tokenizer, max_length=10_000) is pair  # fits: untouched
    tiny = fit_prompt_turns(pair, template, tokenizer, max_length=8)  # cannot fit: the last user turn stays
    assert tiny.prompt == [Message("system", "be kind"), Message("user", "last question")]
    encoded = encode_pair(pair, template, tokenizer, max_length=8)
    assert len(encoded["prompt"]) + len(encoded["chosen"]) <= 8 + len(encoded["chosen"]) and encoded["chosen"]


def test_completions_after_one_prompt_share_its_pass(tiny_llama_dir, monkeypatch):
    """Replies to the same prompt continue from its cached pass: the same scores as whole rows,
    and each prompt goes through the model once."""
    from peft import LoraConfig, get_peft_model

    from ftune.eval import scoring
    from ftune.models.load import load_causal_lm

    task = load_causal_lm(str(tiny_llama_dir))
    encode = lambda text: task.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompts = [encode("the cat is on the mat " * k) for k in (1, 3, 6)]
    replies = [encode(text) for text in ("good", "bad and ugly", "a rather long reply that goes on and on")]
    pairs = [(p, r) for p in prompts for r in replies] + [([], encode("no prompt")), (encode("alone"), encode("one"))]
    model = get_peft_model(task.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))

    widths = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda **kw: widths.append(kw["input_ids"].shape) or forward(**kw))
    shared = scoring.completion_logps(model, pairs, pad_id=0, batch_size=4)
    prompt_passes = [w for w in widths if w[1] == max(len(p) for p in prompts)]
    assert len(prompt_passes) == 1 and prompt_passes[0][0] == 1  # the longest prompt ran once, alone

    monkeypatch.setattr(scoring, "_can_share_prompts", lambda model: False)
    whole_rows = scoring.completion_logps(model, pairs, pad_id=0, batch_size=4)
    for (a, n_a), (b, n_b) in zip(shared, whole_rows):
        assert n_a == n_b and abs(a - b) < 1e-4
