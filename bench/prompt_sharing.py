"""Scoring completions that share a prompt: one pass over the prompt with its cache reused
(``ftune.eval.scoring``) against one whole prompt + completion row each, in the same process.

Two workloads on SmolLM2-135M:
- ``preference``: HH-RLHF held-out pairs (two replies per prompt), the longest and a middle
  slice by length;
- ``labels``: SST-2 sentences with a 2-shot prompt, scored against both label words (the
  label-likelihood evaluation of a labeled task trained as chat).

Prints one JSON object: seconds for each way, ``speedup`` = whole rows / shared (above 1:
sharing is faster), and the largest difference between the two ways' log-probabilities.

    python bench/prompt_sharing.py            # about 5 minutes on 2 CPU cores
"""

from __future__ import annotations

import json
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def timed(model, pairs, share: bool, batch_size: int):
    from ftune.eval import scoring

    original = scoring._can_share_prompts
    scoring._can_share_prompts = (lambda m: original(m)) if share else (lambda m: False)
    try:
        start = time.perf_counter()
        scores = scoring.completion_logps(model, pairs, pad_id=0, batch_size=batch_size)
        return time.perf_counter() - start, scores
    finally:
        scoring._can_share_prompts = original


def compare(name: str, model, pairs, batch_size: int) -> dict:
    rows_seconds, rows = timed(model, pairs, False, batch_size)
    shared_seconds, shared = timed(model, pairs, True, batch_size)
    return {"workload": name, "completions": len(pairs), "prompt_tokens": sum(len(p) for p, _ in pairs),
            "completion_tokens": sum(len(c) for _, c in pairs), "batch_size": batch_size,
            "whole_rows_s": round(rows_seconds, 2), "shared_prompt_s": round(shared_seconds, 2),
            "speedup": round(rows_seconds / shared_seconds, 3),
            "max_logp_difference": max(abs(a[0] - b[0]) for a, b in zip(rows, shared))}


def main() -> None:
    import torch

    from ftune.data.classification import load_labeled_file
    from ftune.data.labeled_chat import label_prompt, to_conversations
    from ftune.data.masking import encode_prompt
    from ftune.data.prepare_generative import build_generative_data
    from ftune.data.templates import resolve_template
    from ftune.eval.preference import encode_pair
    from ftune.models.load import load_causal_lm
    from ftune.settings import load_config

    torch.manual_seed(0)
    task = load_causal_lm("smollm2-135m")
    template = resolve_template("auto", task.tokenizer)
    config = load_config(None, ["model=smollm2-135m", "objective=dpo", f"data.train={SHARED}/hh_rlhf/train.jsonl"])
    held_out = [encode_pair(p, template, task.tokenizer, 1024) for p in build_generative_data(config.data, 42).validation]
    held_out.sort(key=lambda e: len(e["prompt"]) + max(len(e["chosen"]), len(e["rejected"])))
    results = []
    for name, chosen in (("preference, 24 longest pairs", held_out[-24:]), ("preference, 40 middle pairs", held_out[200:240])):
        pairs = [(e["prompt"], e[side]) for e in chosen for side in ("chosen", "rejected")]
        results.append(compare(name, task.model, pairs, batch_size=4))

    sst2 = load_labeled_file(SHARED / "sst2" / "train.tsv")
    end = template.end_of_turn or task.tokenizer.eos_token
    words = ["negative", "positive"]
    replies = [task.tokenizer(w + end, add_special_tokens=False)["input_ids"] for w in words]
    instruction = "Classify the sentiment. Answer with one of: negative, positive."
    shots = [*to_conversations(sst2.texts[:2], [int(label) for label in sst2.labels[:2]], words, instruction)]
    shots = [message for conversation in shots for message in conversation.messages]
    prompts = [encode_prompt([*shots, *label_prompt(text, instruction)], template, task.tokenizer)
               for text in sst2.texts[100:196]]
    results.append(compare("labels, SST-2 2-shot, 96 sentences x 2 labels", task.model,
                           [(p, r) for p in prompts for r in replies], batch_size=16))
    print(json.dumps({"benchmark": "prompt_sharing", "model": "smollm2-135m", "threads": torch.get_num_threads(),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
