"""Faults around checkpoints: a disk that fills up mid-write, a place that cannot be written,
data that changed under an interrupted run, and resumes that cannot be. In-process, on a tiny
random BERT (a few seconds)."""

from __future__ import annotations

import errno
import shutil

import pytest

from ftune.errors import FtuneError
from tests.conftest import FIXTURES, read_json

SETTINGS = ["train.max_steps=12", "train.batch_size=4", "train.evals_per_epoch=2", "train.checkpoint_every=3"]


def _quiet(*_):
    pass


def _settings(bert, data, runs):
    return [f"model={bert}", f"data.train={data}", f"run.dir={runs}", *SETTINGS]


def test_a_full_disk_mid_checkpoint_is_a_clear_error_and_the_last_checkpoint_resumes(tmp_path, tiny_bert_dir,
                                                                                      monkeypatch):
    import ftune
    from ftune.training import checkpoints

    data = tmp_path / "reviews.csv"
    shutil.copyfile(FIXTURES / "reviews.csv", data)
    calls = {"n": 0}
    real_sync = checkpoints._sync_tree

    def fills_up(directory):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint (step 6), its files written but not yet in place
            raise OSError(errno.ENOSPC, "No space left on device", str(directory / "optimizer.pt"))
        real_sync(directory)

    monkeypatch.setattr(checkpoints, "_sync_tree", fills_up)
    with pytest.raises(FtuneError) as full:
        ftune.train(None, _settings(tiny_bert_dir, data, tmp_path / "runs"), echo=_quiet)
    message = str(full.value)
    assert "checkpoint of step 6" in message and "No space left on device" in message
    assert "checkpoint-3, is kept" in message and "ftune train --resume" in message
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-3"]  # no half-written one
    monkeypatch.setattr(checkpoints, "_sync_tree", real_sync)

    with data.open("a") as handle:  # the data changed while the run was down
        handle.write("an extra row,positive\n")
    with pytest.raises(FtuneError, match="has changed since the run started"):
        ftune.train(resume=run, echo=_quiet)
    shutil.copyfile(FIXTURES / "reviews.csv", data)

    with pytest.raises(FtuneError, match="keeps the settings it started with"):
        ftune.train(None, ["train.max_steps=20"], resume=run, echo=_quiet)
    resumed = ftune.train(resume=run, echo=_quiet)
    assert resumed.metrics["training"]["resumed_from_step"] == 3
    assert resumed.metrics["training"]["optimizer_steps"] == 12
    assert read_json(run / "status.json")["state"] == "finished"
    with pytest.raises(FtuneError, match="already finished"):
        ftune.train(resume=run, echo=_quiet)


def test_resume_needs_a_run_with_a_checkpoint(tmp_path):
    import ftune

    with pytest.raises(FtuneError, match="not a run directory"):
        ftune.train(resume=tmp_path, echo=_quiet)
    (tmp_path / "config.yaml").write_text("model: minilm-l6\n")
    with pytest.raises(FtuneError, match="no complete checkpoint"):
        ftune.train(resume=tmp_path, echo=_quiet)
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir(parents=True)  # cut short: no ftune-state.json
    with pytest.raises(FtuneError, match="no complete checkpoint"):
        ftune.train(resume=tmp_path, echo=_quiet)


def test_an_unwritable_run_dir_fails_before_anything_loads(tmp_path, tiny_bert_dir):
    import ftune

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with pytest.raises(FtuneError, match=r"run.dir = .*cannot write there"):
        ftune.train(None, _settings(tiny_bert_dir, FIXTURES / "reviews.csv", blocker / "runs"), echo=_quiet)


def test_the_cli_names_the_file_a_full_disk_stopped(monkeypatch, capsys):
    from ftune.cli import main

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.json")

    monkeypatch.setattr(main, "_report_unfinished_runs", full)
    assert main.main(["config"]) == 2
    assert "cannot write /runs/x/metrics.json: No space left on device" in capsys.readouterr().err
