"""Generative fine-tuning end to end on a tiny random Llama: train (SFT), eval, generate, chat, data."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES, only_run_dir, read_json, run_ftune

GEN = FIXTURES / "gen"
FAST = ["train.epochs=3", "train.batch_size=4", "model.max_length=96", "generate.samples=2",
        "generate.max_new_tokens=6", "method=full", "train.learning_rate=0.003"]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_llama_dir):
    cwd = tmp_path_factory.mktemp("sft")
    result = run_ftune("train", f"model={tiny_llama_dir}", f"data.train={GEN / 'alpaca.jsonl'}",
                       "data.validation_fraction=0.25", *FAST, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, only_run_dir(cwd), result


def test_sft_run_reports_before_and_after_and_ships_a_model(sft_run):
    _, run, result = sft_run
    assert "base model, zero-shot" in result.stdout and "(fine-tuned)" in result.stdout
    # the before/after measurement says what it will cost before spending it, and how long it took
    assert ("measuring the model before training: response loss on 3 held-out examples and its greedy replies "
            "to 2 held-out prompts (up to 6 new tokens each" in result.stdout)
    assert "measured before training in" in result.stdout and "measured after training in" in result.stdout
    metrics = read_json(run / "metrics.json")
    before, after = metrics["validation"]["before"], metrics["validation"]["after"]
    assert after["loss"] < before["loss"], (before, after)
    assert after["tokens"] == before["tokens"] > 0
    assert metrics["training"]["tokens_per_second"] > 0
    # the base model prompted with 4 fixed and 4 retrieved training examples, scored on the same
    # reply tokens; an interval on every perplexity; a verdict against the best of the three
    validation = metrics["validation"]
    assert {"base_4_shot", "base_retrieval_4_shot"} <= set(validation)
    for key in ("before", "base_4_shot", "base_retrieval_4_shot", "after"):
        scores = validation[key]
        assert scores["tokens"] == before["tokens"] and scores["n"] == before["n"], key
        low, high = scores["perplexity_ci"]
        assert low <= scores["perplexity"] <= high, key
        assert "_example_losses" not in scores  # per-example values stay out of metrics.json
    assert validation["base_retrieval_4_shot"]["mean_shots"] > 0
    assert validation["base_4_shot"]["loss"] != validation["before"]["loss"]
    verdict = metrics["verdict"]
    alternatives = ("before", "base_4_shot", "base_retrieval_4_shot")
    assert verdict["baseline_key"] == min(alternatives, key=lambda k: validation[k]["perplexity"])
    assert set(verdict["against"]) == set(alternatives) and verdict["metric"] == "held-out response perplexity"
    assert f"verdict (validation split): {verdict['text']}" in result.stdout
    assert "4-shot prompt, retrieved by minilm-l6" in result.stdout
    samples = read_json(run / "samples.json")
    assert len(samples) == 2 and all({"prompt", "before", "after"} <= set(s) for s in samples)
    assert all(s["after"]["new_tokens"] <= 6 for s in samples)
    info = read_json(run / "model" / "ftune-model.json")
    assert info["task"] == "causal_lm" and info["template"] == "alpaca"  # no chat template: alpaca
    manifest = read_json(run / "data.json")
    assert manifest["format"] == "alpaca" and manifest["template"] == "alpaca"
    card = (run / "README.md").read_text()
    assert card.count("|") > 8 and "The first held-out prompts" in card  # full fine-tuning: no adapters to switch off
    assert card.startswith("# ") and f"**Verdict** (validation split): {verdict['text']}." in card


def test_eval_reports_response_perplexity_for_run_and_base_model(sft_run, tiny_llama_dir):
    cwd, run, _ = sft_run
    tuned = run_ftune("eval", str(run), "--data", str(GEN / "alpaca.jsonl"), "--json", "--errors", "2", cwd=cwd)
    base = run_ftune("eval", str(tiny_llama_dir), "--data", str(GEN / "alpaca.jsonl"), "--json", cwd=cwd)
    assert tuned.returncode == 0 and base.returncode == 0, tuned.stderr[-2000:] + base.stderr[-2000:]
    tuned, base = json.loads(tuned.stdout), json.loads(base.stdout)
    assert tuned["n"] == base["n"] == 12 and tuned["tokens"] == base["tokens"]
    assert tuned["perplexity"] < base["perplexity"]
    assert tuned["perplexity_ci"][0] <= tuned["perplexity"] <= tuned["perplexity_ci"][1]
    worst = [e["loss_per_token"] for e in tuned["errors"]]  # the replies it finds least likely, worst first
    assert len(worst) == 2 and worst == sorted(worst, reverse=True) and worst[0] > tuned["loss"]
    assert "errors" not in base and "_example_losses" not in tuned


def test_generate_and_chat_use_the_run(sft_run):
    cwd, run, _ = sft_run
    generated = run_ftune("generate", str(run), "Give three tips for staying healthy.", "--json",
                          "--max-new-tokens", "5", "--temperature", "0", cwd=cwd)
    assert generated.returncode == 0, generated.stderr[-2000:]
    reply = json.loads(generated.stdout)
    assert reply["new_tokens"] <= 5 and isinstance(reply["reply"], str)
    import os
    import subprocess
    import sys

    chat = subprocess.run([sys.executable, "-m", "ftune.cli.main", "chat", str(run), "--max-new-tokens", "4"],
                          input="hello there\n/reset\nwhat is the cat\n/exit\n", capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert chat.stdout.count("bot> ") == 2 and "(conversation cleared)" in chat.stdout


def test_data_inspect_marks_trained_tokens(tmp_path, tiny_llama_dir):
    result = run_ftune("data", "inspect", f"model={tiny_llama_dir}", f"data.train={GEN / 'chat.jsonl'}",
                       "data.template=chatml", "-n", "2", "--no-color", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained tokens:") == 2 and "[[" in result.stdout
    first_sample = result.stdout.split("--- line", 1)[1]
    assert "<|im_start|>" in first_sample.split("[[")[0]  # the prompt markup is shown, untrained
    assert result.stdout.count("<|im_end|>]]") >= 2  # each reply's end-of-turn is trained


def test_data_stats_and_convert(tmp_path, tiny_llama_dir):
    stats = run_ftune("data", "stats", f"model={tiny_llama_dir}", f"data.train={GEN / 'alpaca.jsonl'}", "--json",
                      cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr[-2000:]
    numbers = json.loads(stats.stdout)
    assert numbers["rows"] == 12 and numbers["tokens"]["max"] >= numbers["tokens"]["median"] > 0
    out = tmp_path / "chat.jsonl"
    converted = run_ftune("data", "convert", str(GEN / "alpaca.jsonl"), str(out), cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]


def test_encoder_model_cannot_do_sft(tmp_path, tiny_bert_dir):
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={GEN / 'alpaca.jsonl'}", cwd=tmp_path)
    assert result.returncode == 2 and "is an encoder" in result.stderr


def test_labeled_task_as_chat_reports_label_accuracy_against_prompting(tmp_path, tiny_llama_dir):
    rows = (FIXTURES / "reviews.csv").read_text().splitlines()
    held_out = tmp_path / "held_out.csv"
    held_out.write_text("\n".join(rows[:1] + rows[1:6] + rows[-5:]) + "\n")
    result = run_ftune("train", f"model={tiny_llama_dir}", f"data.train={FIXTURES / 'reviews.csv'}", "objective=sft",
                       "data.label_words={negative: bad, positive: good}", "eval.few_shot=2",
                       f"data.validation={held_out}", *FAST, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "base model, zero-shot prompt" in result.stdout and "base model, 2-shot prompt" in result.stdout
    run = only_run_dir(tmp_path)
    labels = read_json(run / "metrics.json")["validation"]["labels"]
    assert set(labels) == {"majority", "tfidf_logreg", "base_zero_shot", "base_2_shot", "base_retrieval_2_shot",
                           "fine_tuned"}
    assert all(m["n"] == 10 for m in labels.values())
    assert all(m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1] for m in labels.values())
    verdict = read_json(run / "metrics.json")["verdict"]  # on label accuracy, the task's own question
    assert verdict["metric"] == "accuracy" and verdict["baseline_key"] == max(
        (k for k in labels if k != "fine_tuned"), key=lambda k: labels[k]["accuracy"])
    assert labels["majority"]["accuracy"] == 0.5  # 5 and 5: the baseline is computed, not assumed
    manifest = read_json(run / "data.json")
    assert manifest["label_words"] == {"negative": "bad", "positive": "good"}
    assert manifest["instruction"] == "Classify the text. Answer with one of: bad, good."
    # `ftune eval` on the saved run, on the same rows, gives the figures of the in-memory model
    evaluated = run_ftune("eval", str(run), "--data", str(held_out), "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scores = json.loads(evaluated.stdout)
    assert scores["n"] == 10
    assert scores["accuracy"] == labels["fine_tuned"]["accuracy"] and scores["f1"] == labels["fine_tuned"]["f1"]
    assert scores["accuracy_ci"] == labels["fine_tuned"]["accuracy_ci"]
    # --errors: the mistakes, most confident first, as many as asked for
    worst = run_ftune("eval", str(run), "--data", str(held_out), "--errors", "3", cwd=tmp_path)
    assert worst.returncode == 0, worst.stderr[-2000:]
    wrong = round((1 - scores["accuracy"]) * 10)
    assert worst.stdout.count("predicted") == min(3, wrong) and "95% CI" in worst.stdout


def test_eval_of_a_base_model_on_preference_pairs(tmp_path, tiny_llama_dir):
    result = run_ftune("eval", str(tiny_llama_dir), "--data", str(GEN / "preference.jsonl"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(result.stdout)
    # A base model is its own reference: every implicit-reward margin is 0.
    assert scores["preference_accuracy"] == 0.5 and scores["reward_margin"] == 0 and scores["n"] == 6
    # Likelihood accuracy is the model's own per-token preference: swapping chosen and
    # rejected turns every win into a loss.
    swapped = tmp_path / "swapped.jsonl"
    rows = [json.loads(line) for line in (GEN / "preference.jsonl").read_text().splitlines()]
    swapped.write_text("".join(json.dumps({**r, "chosen": r["rejected"], "rejected": r["chosen"]}) + "\n" for r in rows))
    flipped = json.loads(run_ftune("eval", str(tiny_llama_dir), "--data", str(swapped), "--json", cwd=tmp_path).stdout)
    assert flipped["likelihood_accuracy"] == pytest.approx(1 - scores["likelihood_accuracy"])
    assert 0 < scores["likelihood_accuracy"] < 1  # this random model prefers some replies of each kind


def test_padding_free_batching_trains(tmp_path, tiny_llama_dir):
    result = run_ftune("train", f"model={tiny_llama_dir}", f"data.train={GEN / 'chat.jsonl'}",
                       "train.batching=padding_free", "train.max_steps=3", "generate.samples=0",
                       "data.validation_fraction=0.2", "model.max_length=96", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    training = read_json(only_run_dir(tmp_path) / "metrics.json")["training"]
    assert training["optimizer_steps"] == 3 and training["tokens_per_second"] > 0


def test_a_test_file_for_sft_is_refused_before_anything_loads(tmp_path, tiny_llama_dir):
    result = run_ftune("train", f"model={tiny_llama_dir}", f"data.train={GEN / 'alpaca.jsonl'}",
                       f"data.test={GEN / 'alpaca.jsonl'}", cwd=tmp_path)
    assert result.returncode == 2 and "data.test" in result.stderr and "ftune eval" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_merged_run_ships_plain_weights_that_score_like_the_adapter(tmp_path, tiny_llama_dir):
    """run.merge=true folds LoRA into the base: no adapter files, and `ftune eval` of the
    merged model gives the held-out loss measured on the adapter model before saving."""
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join((GEN / "alpaca.jsonl").read_text().splitlines(keepends=True)[:4]))
    result = run_ftune("train", f"model={tiny_llama_dir}", f"data.train={GEN / 'alpaca.jsonl'}",
                       f"data.validation={held_out}", "method=lora", "run.merge=true", "train.max_steps=2",
                       "train.batch_size=4", "model.max_length=96", "generate.samples=2", "generate.max_new_tokens=4",
                       "train.learning_rate=0.01", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run_dir(tmp_path)
    files = {p.name for p in (run / "model").iterdir()}
    assert "model.safetensors" in files and not any(name.startswith("adapter_") for name in files)
    assert read_json(run / "model" / "ftune-model.json")["merged_from"] == "lora"
    after = read_json(run / "metrics.json")["validation"]["after"]
    scored = run_ftune("eval", str(run), "--data", str(held_out), "--json", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr[-2000:]
    again = json.loads(scored.stdout)
    assert again["tokens"] == after["tokens"] and again["loss"] == pytest.approx(after["loss"], abs=1e-4)
    base = json.loads(run_ftune("eval", str(tiny_llama_dir), "--data", str(held_out), "--json", cwd=tmp_path).stdout)
    assert base["loss"] != pytest.approx(after["loss"], abs=1e-4)  # the merge carried the training
    # replies side by side, base (adapters off) and tuned, where their likelihoods differ most
    samples = read_json(run / "samples.json")
    change = [abs(s["loss_per_token"]["before"] - s["loss_per_token"]["after"]) for s in samples]
    assert len(samples) == 2 and change == sorted(change, reverse=True) and change[0] > 0
    assert all(s["before"]["new_tokens"] <= 4 and s["after"]["new_tokens"] <= 4 for s in samples)
    card = (run / "README.md").read_text()
    assert "## Replies, base and fine-tuned" in card and "changed most in likelihood per token" in card
