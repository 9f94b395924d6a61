"""Training over 2 real processes (DDP, gloo on CPU) against 1 process with the same global batch,
on a tiny random BERT without dropout: the same weights, one run directory written by the main
process alone. Launched both ways a user would: `ftune train ... train.processes=2` and
`torchrun -m ftune train ...`; and a 2-process run killed with SIGKILL after a checkpoint and
resumed with `ftune train --resume` over 2 processes ends as the uninterrupted one. About 70 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, only_run_dir, read_json, run_ftune

COMMON = ["train.max_steps=6", "train.learning_rate=0.01", "train.precision=fp32", "eval.baselines=false",
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
    assert two["optimizer_steps"] == one["optimizer_steps"] == 6
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


# Global batch 16 rows: 4 x 4 accumulation in one process, 2 x 4 accumulation x 2 processes.
# 36 rows make an epoch's last step 4 rows for 8 micro-batches over the 2 processes, so half
# of them are filler rows whose masked labels must add nothing.
ACCUMULATE = "train.gradient_accumulation_steps=4"


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory, bert_without_dropout) -> Path:
    where = tmp_path_factory.mktemp("one-process")
    single = run_ftune("train", *_settings(bert_without_dropout, 4), ACCUMULATE, cwd=where)
    assert single.returncode == 0, single.stderr[-3000:]
    return only_run_dir(where)


# 3 steps an epoch; a checkpoint every 2 steps (written by both processes) must not change training
TWO_PROCESSES = [ACCUMULATE, "train.processes=2", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def two_process_launch(tmp_path_factory, bert_without_dropout) -> tuple[Path, subprocess.CompletedProcess]:
    """`ftune train ... train.processes=2`, uninterrupted: (its run, the command's result)."""
    where = tmp_path_factory.mktemp("two-processes")
    launched = run_ftune("train", *_settings(bert_without_dropout, 2), *TWO_PROCESSES, cwd=where)
    assert launched.returncode == 0, launched.stderr[-3000:]
    return only_run_dir(where), launched  # one run directory, written by the main process


def test_ftune_starts_two_processes_that_train_like_one_with_the_global_batch(two_process_launch, single_process_run):
    run, launched = two_process_launch
    assert "training over 2 processes (ddp, gloo)" in launched.stdout
    assert launched.stdout.count("validation split (") == 1  # one report: the main process's
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(
        (single_process_run / "log.jsonl").read_text().splitlines())  # no line written twice
    assert read_json(run / "status.json")["state"] == "finished"
    _assert_same_training(single_process_run, run)


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_a_two_process_run_killed_after_a_checkpoint_resumes_over_two_processes(tmp_path, bert_without_dropout,
                                                                                 two_process_launch):
    """Killed after step 5 (SIGKILL in both processes), resumed from checkpoint-4: mid-epoch in the
    second epoch, so each process must skip its share of the epoch's first step in that epoch's order."""
    uninterrupted, _ = two_process_launch
    settings = [*_settings(bert_without_dropout, 2), *TWO_PROCESSES]
    killed = run_ftune("train", *settings, cwd=tmp_path, env={"FTUNE_KILL_AT": "step:5"})
    assert killed.returncode != 0 and "failed" in killed.stderr, killed.stderr[-3000:]
    run = only_run_dir(tmp_path)
    assert read_json(run / "status.json")["state"] == "started" and not (run / "model").exists()
    checkpoint = run / "checkpoints" / "checkpoint-4"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert read_json(checkpoint / "ftune-state.json")["processes"] == 2

    resumed = run_ftune("train", "--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "training over 2 processes" in resumed.stdout and f"resuming {run} from checkpoint-4" in resumed.stdout
    assert only_run_dir(tmp_path) == run  # the same run directory, no new one
    metrics = read_json(run / "metrics.json")["training"]
    assert metrics["resumed_from_step"] == 4
    assert metrics["optimizer_steps"] == read_json(uninterrupted / "metrics.json")["training"]["optimizer_steps"] == 6
    assert read_json(run / "status.json")["state"] == "finished" and not (run / "checkpoints").exists()
    expected, got = _losses(uninterrupted), _losses(run)
    assert [step for step, _ in got] == [step for step, _ in expected] == list(range(1, 7))  # cut back, no repeats
    for (step, x), (_, y) in zip(expected, got):
        assert abs(x - y) < 1e-4, (step, x, y)
    a, b = _weights(uninterrupted), _weights(run)
    assert a.keys() == b.keys() and a
    for name in a:
        assert (a[name] - b[name]).abs().max().item() < 1e-5, name


def test_resuming_over_more_processes_than_the_machine_has_is_refused(tmp_path):
    """A checkpoint of 3 processes on a machine with fewer cores: refused before any process starts."""
    cores = os.cpu_count() or 1
    run = tmp_path / "runs" / "run"
    checkpoint = run / "checkpoints" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (run / "config.yaml").write_text(f"data:\n  train: {FIXTURES / 'reviews.csv'}\ntrain:\n  device: cpu\n")
    (run / "status.json").write_text(json.dumps({"state": "started"}))
    (checkpoint / "ftune-state.json").write_text(json.dumps({"step": 2, "processes": cores + 1}))
    result = run_ftune("train", "--resume", str(run), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert (f"--resume {run}: the run trained over {cores + 1} processes and resumes over as many; "
            f"train.processes = {cores + 1}: more processes than the {cores} CPU core(s)") in result.stderr
    assert (checkpoint / "ftune-state.json").is_file() and not (run / "model").exists()


def test_torchrun_launches_the_same_run(tmp_path, bert_without_dropout, single_process_run):
    """Launched by torchrun itself (what accelerate launch runs underneath)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("FTUNE_RUN_PATH", None)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "ftune", "train", *_settings(bert_without_dropout, 2), ACCUMULATE],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_training(single_process_run, only_run_dir(tmp_path))


def test_impossible_launches_fail_before_any_process_starts(tmp_path, tiny_bert_dir):
    cores = os.cpu_count() or 1
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                       f"train.processes={cores + 1}", "train.device=cpu", cwd=tmp_path)
    assert result.returncode == 2
    assert f"train.processes = {cores + 1}: more processes than the {cores} CPU core(s)" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_sharding_strategies_on_a_cpu_fail_before_any_process_starts(tmp_path, tiny_bert_dir):
    result = run_ftune("train", f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                       "train.processes=2", "train.distributed=fsdp", "train.device=cpu", cwd=tmp_path)
    assert result.returncode == 2
    assert "train.distributed = fsdp: FSDP and DeepSpeed shard the model over CUDA GPUs" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_gpu_benchmark_plans_each_strategy_against_one_gpu():
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "bench" / "gpu_distributed.py"),
                           "--dry-run", "--steps", "7"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    commands = json.loads(done.stdout)["commands"]
    assert set(commands) == {"one_gpu", "ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"}
    assert "train.batch_size=16" in commands["one_gpu"] and "train.processes=2" not in commands["one_gpu"]
    for strategy in ("fsdp", "deepspeed-zero3"):
        assert {f"train.distributed={strategy}", "train.processes=2", "train.batch_size=8",
                "train.max_steps=7"} <= set(commands[strategy])
