"""The suite's CLI runs fork from a server with the libraries imported (tests/forked_cli.py);
a forked run must give what a fresh interpreter gives."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import run_ftune
from tests.forked_cli import FRESH_VARIABLE


def test_a_forked_run_gives_a_fresh_interpreters_output_and_exit_status(tmp_path, monkeypatch):
    (tmp_path / "my.yaml").write_text("method: freeze\n")  # found through the run's working directory
    for args, status in ((("config", "my.yaml", "method.layers=1"), 0), (("train", "method.alpah=8"), 2)):
        forked = run_ftune(*args, cwd=tmp_path)
        monkeypatch.setenv(FRESH_VARIABLE, "1")
        fresh = run_ftune(*args, cwd=tmp_path)
        monkeypatch.delenv(FRESH_VARIABLE)
        assert forked.returncode == fresh.returncode == status
        assert (forked.stdout, forked.stderr) == (fresh.stdout, fresh.stderr)
        assert forked.stdout or forked.stderr


def test_a_forked_run_past_its_timeout_is_killed_like_a_subprocess(tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        run_ftune("config", "method.layers=1", cwd=tmp_path, timeout=0.001)
