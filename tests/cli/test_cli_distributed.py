"""Training over 2 real processes (DDP, gloo on CPU) against 1 process with the same global batch,
on a tiny random BERT without dropout: the same weights, one run directory written by the main
process alone. Launched both ways a user would: `ftune train ... train.processes=2` and
`torchrun -m ftune train ...`. About 60 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, only_run_dir, read_json, run_ftune

# 36 training rows; global batch 8 makes 5 steps an epoch, the last one short (4 rows)
COMMON = ["train.max_steps=12", "train.learning_rate=0.01", "train.precision=fp32", "eval.baselines=false",
          "method.dropout=0", "model.max_length=32", "train.evals_per_epoch=1"]


@pytest.fixture(scope="module")
def bert_without_dropout(tmp_path_factory, tiny_bert_dir) -> Path:
    """The tiny BERT with dropout off, so that two processes and one draw nothing at random."""
    import shutil

    from transformers import BertConfig

    directory = tmp_path_factory.mktemp("bert-no-dropout")
    shutil.copytree(tiny_bert_dir, directory, dirs_exist_ok=True)
    config = BertConfig.from_pretrained(directory)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(directory)
    return directory


def _settings(model: Path, batch_size: int) -> list[str]:
    return [f"model={model}", f"data.train={FIXTURES / 'reviews.csv'}", f"train.batch_size={batch_size}", *COMMON]


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    (path,) = (run / "model").glob("*.safetensors")
    return load_file(str(path))


def _assert_same_training(single: Path, distributed: Path) -> None:
    one, two = read_json(single / "metrics.json")["training"], read_json(distributed / "metrics.json")["training"]
    assert two["optimizer_steps"] == one["optimizer_steps"] == 12
    assert two["best_step"] == one["best_step"]
    a, b = _weights(single), _weights(distributed)
    assert a.keys() == b.keys() and a
    moved = False
    for name in a:
        assert (a[name] - b[name]).abs().max().item() < 1e-5, name
    # the runs trained (the weights are not both simply the initial ones)
    losses = [[r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]
              for run in (single, distributed)]
    assert losses[0] and len(losses[0]) == len(losses[1])
    for x, y in zip(*losses):
        assert abs(x - y) < 1e-4
        moved = moved or abs(x - losses[0][0]) > 1e-3
    assert moved, losses[0]


def test_two_processes_train_like_one_with_the_global_batch(tmp_path, bert_without_dropout):
    (tmp_path / "one").mkdir()
    single = run_ftune("train", *_settings(bert_without_dropout, 8), cwd=tmp_path / "one")
    assert single.returncode == 0, single.stderr[-3000:]

    (tmp_path / "two").mkdir()
    launched = run_ftune("train", *_settings(bert_without_dropout, 4), "train.processes=2", cwd=tmp_path / "two")
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "training over 2 processes (ddp, gloo)" in launched.stdout
    assert launched.stdout.count("validation split (") == 1  # one report: the main process's
    run = only_run_dir(tmp_path / "two")  # one run directory, written by the main process
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(
        (only_run_dir(tmp_path / "one") / "log.jsonl").read_text().splitlines())  # no line written twice
    assert read_json(run / "status.json")["state"] == "finished"
    _assert_same_training(only_run_dir(tmp_path / "one"), run)


def test_torchrun_with_accumulation_and_a_last_step_shorter_than_its_micro_batches(tmp_path, bert_without_dropout):
    """Launched by torchrun itself (what accelerate launch runs underneath). Global batch
    2 rows x 4 accumulation x 2 processes = 16: an epoch's last step has 4 rows for 8
    micro-batches, so half of them are filler rows whose masked labels must add nothing."""
    accumulate = "train.gradient_accumulation_steps=4"
    (tmp_path / "one").mkdir()
    single = run_ftune("train", *_settings(bert_without_dropout, 4), accumulate, cwd=tmp_path / "one")
    assert single.returncode == 0, single.stderr[-3000:]

    (tmp_path / "torchrun").mkdir()
    env = dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("FTUNE_RUN_PATH", None)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "ftune", "train", *_settings(bert_without_dropout, 2), accumulate],
                            cwd=tmp_path / "torchrun", env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_training(only_run_dir(tmp_path / "one"), only_run_dir(tmp_path / "torchrun"))


def test_impossible_launches_fail_before_any_process_starts(tmp_path, tiny_bert_dir):
    cores = os.cpu_count() or 1
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                       f"train.processes={cores + 1}", "train.device=cpu", cwd=tmp_path)
    assert result.returncode == 2
    assert f"train.processes = {cores + 1}: more processes than the {cores} CPU core(s)" in result.stderr
    assert not (tmp_path / "runs").exists()
