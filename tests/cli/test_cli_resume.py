"""Kill training with SIGKILL (``FTUNE_KILL_AT``, the process kills itself at an exact point)
and resume it: the final weights, metrics and log must equal an uninterrupted run's, bitwise.

The process is killed at three points: mid-epoch (after step 11, in the second epoch), right
after an evaluation, and halfway through writing a checkpoint; classification with LoRA at all
three (keeping the best weights, which the checkpoints then carry), SFT with LoRA and QLoRA at
the first two (keeping the last). The killed runs are real processes; the uninterrupted run and
the resumes run in this process through the Python API (same code path, without paying for a
fresh import of torch each time), except one resume through `ftune train --resume`.
About 70 s in all."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, read_json, run_ftune

COMMON = ["train.max_steps=12", "train.evals_per_epoch=2", "train.checkpoint_every=3", "train.keep_checkpoints=2",
          "train.learning_rate=0.01"]
GENERATIVE = ["train.batch_size=2", "generate.samples=0", "model.max_length=96"]


def _job_settings(job: str, bert: Path, llama: Path) -> list[str]:
    if job == "classification":
        # train.keep=best: the best weights so far travel in the checkpoint too (SFT keeps the last)
        return [f"model={bert}", f"data.train={FIXTURES / 'reviews.csv'}", "train.batch_size=4", "train.keep=best",
                *COMMON]
    alpaca = f"data.train={FIXTURES / 'gen' / 'alpaca.jsonl'}"
    method = "method=qlora" if job == "qlora" else "method=lora"
    return [f"model={llama}", alpaca, method, *GENERATIVE, *COMMON]


def _quiet(*_):
    pass


def _only_run(parent: Path) -> Path:
    (run,) = [p for p in (parent / "runs").iterdir() if p.is_dir()]
    return run


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    weights = {}
    for path in sorted((run / "model").glob("*.safetensors")):
        weights.update(load_file(str(path)))
    assert weights, f"no weights in {run / 'model'}"
    return weights


def _trajectory(run: Path) -> list[tuple]:
    """Every logged step's loss, learning rate and evaluation, without the wall-clock fields."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("learning_rate"), r.get("eval_loss"), r.get("eval_accuracy"))
            for r in rows if "loss" in r or "eval_loss" in r]


@pytest.fixture(scope="module")
def job(request, tmp_path_factory, tiny_bert_dir, tiny_llama_dir):
    """The job's settings and its uninterrupted run."""
    import ftune

    settings = _job_settings(request.param, tiny_bert_dir, tiny_llama_dir)
    parent = tmp_path_factory.mktemp(f"{request.param}-uninterrupted")
    ftune.train(None, [*settings, f"run.dir={parent / 'runs'}"], echo=_quiet)
    return request.param, settings, _only_run(parent)


def _kill_point(point: str, uninterrupted: Path) -> tuple[str, int]:
    """FTUNE_KILL_AT's value and the checkpoint the resume must start from (every 3 steps)."""
    if point == "mid-epoch":
        return "step:11", 9
    if point == "after-evaluation":
        evaluated = [step for step, _, _, eval_loss, _ in _trajectory(uninterrupted) if eval_loss is not None]
        step = evaluated[1]  # the second evaluation: killed before that step's checkpoint is written
        return f"evaluate:{step}", (step - 1) // 3 * 3
    return "checkpoint-write:9", 6


# Every point for classification; the points that differ by job (the data position, the best
# weights kept by a loss rather than an accuracy, QLoRA's quantized base) for the others. The
# checkpoint write is the same code for every job.
KILLS = [("classification", "mid-epoch"), ("classification", "after-evaluation"),
         ("classification", "during-checkpoint-write"), ("sft-lora", "mid-epoch"), ("sft-lora", "after-evaluation"),
         ("qlora", "mid-epoch"), ("qlora", "after-evaluation")]


@pytest.mark.parametrize("job, point", KILLS, indirect=["job"], ids=[f"{j}-{p}" for j, p in KILLS])
def test_a_run_killed_and_resumed_ends_bitwise_equal_to_an_uninterrupted_one(job, point, tmp_path):
    import ftune

    name, settings, uninterrupted = job
    kill_at, resume_step = _kill_point(point, uninterrupted)
    killed = run_ftune("train", *settings, cwd=tmp_path, env={"FTUNE_KILL_AT": kill_at})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = _only_run(tmp_path)
    assert read_json(run / "status.json")["state"] == "started" and not (run / "model").exists()
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert f"checkpoint-{resume_step}" in checkpoints
    if point == "during-checkpoint-write":
        assert ".partial" in checkpoints and "checkpoint-9" not in checkpoints  # the cut-short write

    if name == "classification" and point == "during-checkpoint-write":  # once through the CLI
        resumed = run_ftune("train", "--resume", str(run), cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"resuming {run} from checkpoint-{resume_step}" in resumed.stdout
        metrics = read_json(run / "metrics.json")
    else:
        metrics = ftune.train(resume=run, echo=_quiet).metrics
    assert metrics["training"]["resumed_from_step"] == resume_step

    reference = read_json(uninterrupted / "metrics.json")
    assert metrics["validation"] == reference["validation"]
    assert metrics["training"]["optimizer_steps"] == reference["training"]["optimizer_steps"] == 12
    expected, got = _weights(uninterrupted), _weights(run)
    assert expected.keys() == got.keys()
    different = [key for key in expected if not expected[key].equal(got[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[0]}"
    assert _trajectory(run) == _trajectory(uninterrupted)  # the log was cut back to the checkpoint
    assert read_json(run / "status.json")["state"] == "finished"
    assert not (run / "checkpoints").exists()  # a finished run's model supersedes them
