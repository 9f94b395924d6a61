"""DPO's held-out evaluations score the reference once: it does not train."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES

GEN = FIXTURES / "gen"


def test_the_reference_is_scored_at_the_first_evaluation_only(tiny_llama_dir, tmp_path, monkeypatch):
    import ftune
    from ftune.eval import preference

    reference_passes = []
    reference_logps = preference.reference_logps

    def counted(*args, **kwargs):
        scores = reference_logps(*args, **kwargs)
        reference_passes.append(scores)
        return scores

    monkeypatch.setattr(preference, "reference_logps", counted)
    pairs = GEN / "preference.jsonl"
    run = ftune.train(None, [f"model={tiny_llama_dir}", "model.max_length=64", "objective=dpo", "method=lora",
                             f"data.train={pairs}", f"data.validation={pairs}", "train.epochs=3",
                             "train.batch_size=2", "train.learning_rate=0.005", "train.evals_per_epoch=2",
                             f"run.dir={tmp_path}"], echo=lambda *_: None)
    log = [json.loads(line) for line in (run.run_dir / "log.jsonl").read_text().splitlines()]
    evaluations = [r for r in log if "eval_preference_accuracy" in r]
    assert len(evaluations) >= 4
    assert len(reference_passes) == 1  # the first evaluation's; before training the model is its reference
    # the cached figures are the reference's: after training its margins moved, its reference did not
    assert evaluations[-1]["eval_reward_margin"] != evaluations[0]["eval_reward_margin"]
