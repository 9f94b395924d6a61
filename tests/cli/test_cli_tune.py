"""`ftune tune` end to end: a search killed mid-trial resumes without losing or repeating a trial;
--help and space errors."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import FIXTURES

TINY = ["train.max_steps=8", "train.evals_per_epoch=2", "train.batch_size=8", "eval.baselines=false",
        "model.max_length=32"]


def _killed_mid_trial(db, process, deadline: float) -> bool:
    """Wait until a trial finished and the next one has reported an evaluation; then SIGKILL."""
    query = ("select (select count(*) from trials where state = 'COMPLETE'), (select count(*) from trials t join "
             "trial_intermediate_values v on v.trial_id = t.trial_id where t.state = 'RUNNING')")
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
        try:
            with sqlite3.connect(db) as connection:
                complete, reported = connection.execute(query).fetchone()
        except sqlite3.Error:  # not created yet, or locked for a write
            continue
        if complete >= 1 and reported:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
    return False


def test_a_killed_search_resumes_without_losing_or_repeating_a_trial(tmp_path, tiny_bert_dir):
    import optuna

    out = tmp_path / "search"
    command = [sys.executable, "-m", "ftune.cli.main", "tune", f"model={tiny_bert_dir}",
               f"data.train={FIXTURES / 'reviews.csv'}", *TINY, "--trials", "4", "--out", str(out)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        killed = _killed_mid_trial(out / "study.db", first, time.monotonic() + 240)
    assert killed, (tmp_path / "first.log").read_text()[-3000:]

    def load():
        return optuna.load_study(study_name="ftune", storage=f"sqlite:///{out / 'study.db'}")

    before = load().trials
    (interrupted,) = [t for t in before if t.state.name == "RUNNING"]
    finished_before = {t.number: (t.params, t.value) for t in before if t.state.name == "COMPLETE"}
    assert interrupted.params and finished_before

    resumed = subprocess.run([sys.executable, "-m", "ftune.cli.main", "tune", "--resume", str(out), "--trials", "4"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert f"trial #{interrupted.number} was interrupted" in resumed.stdout

    trials = load().trials
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4  # --trials counts finished trials across both processes
    assert {t.number: (t.params, t.value) for t in finished if t.number in finished_before} == finished_before
    assert trials[interrupted.number].state.name == "FAIL"
    reruns = [t for t in finished if t.params == interrupted.params]
    assert len(reruns) == 1 and reruns[0].user_attrs["retry_of"] == interrupted.number  # exactly once
    points = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(points)) == len(points)  # no finished trial ran twice
    rows = {r["number"]: r for r in csv.DictReader((out / "trials.csv").open())}
    assert rows[str(interrupted.number)]["note"] == f"interrupted; re-run as #{reruns[0].number}"
    assert (out / "best.yaml").is_file() and (out / "report.html").is_file()
    assert "best: trial #" in resumed.stdout and f"trial 4/4 (#{len(trials) - 1})" in resumed.stdout


def test_help_and_space_errors(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    from ftune.cli.main import main

    monkeypatch.chdir(tmp_path)

    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    text = capsys.readouterr().out
    for words in ("--trials", "--timeout", "--resume", "--storage", "SPACE.yaml", "train.learning_rate: {low:",
                  "best.yaml", "study.db"):
        assert words in text, words

    space = tmp_path / "space.yaml"
    space.write_text("method.r: [4, 8]\ntrain.lr: {low: 1e-5, high: 1e-3}\n")
    config = tmp_path / "tiny.yaml"
    config.write_text(f"model: {tiny_bert_dir}\ndata:\n  train: {FIXTURES / 'reviews.csv'}\n")
    for arguments in ([str(config), str(space)], [f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                                                 "--space", str(space)]):
        assert main(["tune", *arguments, "--out", str(tmp_path / "search")]) == 2
        assert 'space.yaml:2: train.lr: unknown key. Did you mean "train.learning_rate"?' in capsys.readouterr().err
    assert not (tmp_path / "search").exists()  # nothing written, nothing trained
