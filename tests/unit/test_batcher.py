"""Dynamic batching: rows of different lengths and adapters decoded together give each row the
tokens it gets alone; techniques that cannot mix are grouped per adapter."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from ftune.methods import build_method
from ftune.serving.batcher import Batcher, Job, decode_together
from ftune.serving.sampling import Sampling
from tests.unit.test_mixed_batches import _two_adapters


def _tokens(job: Job) -> list[int]:
    out = []
    while (token := job.tokens.get_nowait()) is not None:
        out.append(token)
    return out


def _jobs(tokenizer, adapters, sampling):
    prompts = ["the cat is on the table", "a warm and funny film", "the table", "a film"]
    return [Job(adapter, tokenizer(text)["input_ids"], Sampling(**sampling))
            for text, adapter in zip(prompts, adapters)]


def test_mixed_adapters_and_lengths_in_one_batch_match_each_row_alone(tiny_llama_dir):
    _, model, tokenizer = _two_adapters("lora", tiny_llama_dir)
    adapters = ["first", "second", "__base__", "first"]
    for sampling in ({"max_tokens": 6, "temperature": 0.0}, {"max_tokens": 6, "temperature": 1.0, "seed": 3}):
        together = _jobs(tokenizer, adapters, sampling)
        decode_together(model, together, {"adapter_names": adapters}, stop_ids=[], pad_id=0)
        for job in together:
            alone = Job(job.adapter, job.prompt, Sampling(**sampling))
            decode_together(model, [alone], {"adapter_names": [job.adapter]}, stop_ids=[], pad_id=0)
            assert _tokens(job) == _tokens(alone), (job.adapter, sampling)


def test_techniques_that_cannot_mix_run_per_adapter():
    backend = SimpleNamespace(adapters={"a", "b"}, methods={"a": build_method("lora"), "b": build_method("dora")})
    backend.mixable = lambda name: all(backend.methods[x].serves_mixed_batches() for x in backend.adapters)
    batcher = Batcher.__new__(Batcher)
    batcher.backend = backend
    jobs = [Job(a, [1], Sampling()) for a in ("a", "b", "a")]
    assert [[j.adapter for j in g] for g in batcher.groups(jobs)] == [["a", "a"], ["b"]]
    backend.methods["b"] = build_method("lora")
    assert len(batcher.groups(jobs)) == 1


def test_a_cancelled_row_stops_and_the_rest_go_on(tiny_llama_dir):
    _, model, tokenizer = _two_adapters("lora", tiny_llama_dir)
    jobs = _jobs(tokenizer, ["first", "second"], {"max_tokens": 5, "temperature": 0.0})
    jobs[0].cancelled.set()
    decode_together(model, jobs, {"adapter_names": ["first", "second"]}, stop_ids=[], pad_id=0)
    assert _tokens(jobs[0]) == [] and len(_tokens(jobs[1])) == 5
    assert torch.is_grad_enabled()
