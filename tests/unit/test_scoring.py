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
