"""DPO end to end on a tiny random Llama: preference pairs in, a tuned adapter and before/after
preference scores out."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, only_run_dir, read_json, run_ftune

GEN = FIXTURES / "gen"


def test_dpo_with_lora_raises_held_out_preference_accuracy(tmp_path, tiny_llama_dir):
    # Train and evaluate on the same few pairs: on a tiny random model this checks the plumbing
    # (the implicit reward moves towards the chosen replies), not generalisation.
    result = run_ftune("train", f"model={tiny_llama_dir}", f"data.train={GEN / 'preference.jsonl'}",
                       f"data.validation={GEN / 'preference.jsonl'}", "train.epochs=4", "train.batch_size=2",
                       "train.learning_rate=0.005", "model.max_length=64", "objective.beta=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held-out preference pairs" in result.stdout
    run = only_run_dir(tmp_path)
    metrics = read_json(run / "metrics.json")
    before, after = metrics["validation"]["before"], metrics["validation"]["after"]
    assert before["preference_accuracy"] == 0.5 and abs(before["reward_margin"]) < 1e-6  # model == reference
    assert after["reward_margin"] > 0 and after["preference_accuracy"] > 0.5
    # a paired interval over the held-out pairs, and the verdict it allows
    for scores in (before, after):
        low, high = scores["preference_accuracy_ci"]
        assert low <= scores["preference_accuracy"] <= high and "_wins" not in scores
    assert before["preference_accuracy_ci"] == [0.5, 0.5]  # every pair a tie before training
    verdict = metrics["verdict"]
    assert verdict["metric"] == "held-out preference accuracy" and verdict["baseline_key"] == "before"
    assert verdict["difference"] == round((after["preference_accuracy"] - 0.5) * 100, 4)
    assert verdict["text"].startswith("preference tuning ") and "verdict (validation split): " in result.stdout
    info = read_json(run / "model" / "ftune-model.json")
    assert info["objective"] == "dpo" and (run / "model" / "adapter_model.safetensors").is_file()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log)
    # held-out evaluation during training is ftune's preference scoring; "after" is the kept
    # step's evaluation (the last one: train.keep=last), and scoring the saved adapter again
    # gives the same figures
    evaluations = {r["step"]: r for r in log if "eval_preference_accuracy" in r}
    training = metrics["training"]
    assert training["kept"] == "last" and training["kept_step"] == training["optimizer_steps"] == max(evaluations)
    kept = evaluations[training["kept_step"]]
    assert kept["eval_reward_margin"] == after["reward_margin"] and kept["eval_loss"] == after["loss"]
    assert evaluations[training["best_step"]]["eval_loss"] == min(r["eval_loss"] for r in evaluations.values())
    # tokens/s counts training time only: the held-out evaluations inside training are set apart
    training = metrics["training"]
    assert 0 < training["evaluation_seconds"] < training["seconds"]
    assert training["evaluation_seconds"] == round(sum(r["eval_runtime"] for r in evaluations.values()), 1)
    rescored = run_ftune("eval", str(run), "--data", str(GEN / "preference.jsonl"), "--json", "--errors", "2",
                         cwd=tmp_path)
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    again = json.loads(rescored.stdout.strip().splitlines()[-1])
    assert abs(again["reward_margin"] - after["reward_margin"]) < 1e-4
    assert again["preference_accuracy"] == after["preference_accuracy"]
    margins = [e["reward_margin"] for e in again["errors"]]  # the pairs preferred most the wrong way first
    assert len(margins) == 2 and margins == sorted(margins) and margins[0] < after["reward_margin"]
