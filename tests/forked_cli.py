"""Run ``python -m ftune.cli.main ARGS`` in its own process without paying the imports each time.

A fresh interpreter spends about 6 of the 9.5 seconds of a tiny-model ``ftune train`` importing
torch, transformers, peft (and bitsandbytes under it), scikit-learn and datasets. The suite
starts well over a hundred such processes. Here they fork from multiprocessing's fork server,
which imported those libraries once and has run nothing: each CLI run is still a process of
its own, with its own working directory, environment, arguments, stdout, stderr, exit code
(a negative signal number when killed) and atexit handlers, as ``subprocess.run`` gives.

What a forked run does not re-read is environment read while those libraries are imported
(``OMP_NUM_THREADS``, for one): :func:`run_cli` starts a fresh interpreter when a run's extra
environment names anything but ftune's own variables, and for every run when
``FTUNE_TEST_FRESH_INTERPRETERS=1``.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PRELOAD = ["torch", "transformers", "peft", "accelerate", "datasets", "sklearn.linear_model", "sklearn.metrics",
           "safetensors.torch", "ftune.cli.main", "ftune.training.loop", "ftune.eval.evaluate"]
FRESH_VARIABLE = "FTUNE_TEST_FRESH_INTERPRETERS"
_context = None


def run_cli(args: list[str], cwd: Path, env: dict[str, str], extra_env: dict[str, str],
            timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run([python, -m, ftune.cli.main, *args], capture_output=True, text=True)``,
    forked from the fork server when that gives the same process (see the module docstring)."""
    command = [sys.executable, "-m", "ftune.cli.main", *args]
    if os.environ.get(FRESH_VARIABLE) == "1" or any(not key.startswith("FTUNE_") for key in extra_env):
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="ftune-cli-") as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        process = _fork_server().Process(target=_cli_process, args=(list(args), str(cwd), dict(env), str(out), str(err)))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(command, timeout, output=_read(out), stderr=_read(err))
        return subprocess.CompletedProcess(command, process.exitcode, _read(out), _read(err))


def _fork_server():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _cli_process(args: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked process: what ``python -m ftune.cli.main ARGS`` does, then exit."""
    import atexit
    import runpy
    import traceback
    import warnings

    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    if env.get("PYTHONWARNINGS") == "ignore":
        warnings.simplefilter("ignore")
    sys.argv = [sys.executable, *args]
    code = 0
    try:
        runpy.run_module("ftune.cli.main", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:  # as the interpreter would: the traceback on stderr, exit status 1
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # a Process's os._exit skips them; ftune's failed-run tracking needs them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
