"""Deliberate crashes at exact points, for the tests that prove a run resumes: with
``FTUNE_KILL_AT=<point>:<step>`` the process sends itself SIGKILL (no cleanup, as the kernel's
OOM killer would) when training reaches that point at that optimizer step.

Points: ``step`` (after an optimizer step), ``evaluate`` (right after an evaluation),
``checkpoint-write`` (halfway through writing a checkpoint). Unset, nothing happens.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "FTUNE_KILL_AT"
POINTS = ("step", "evaluate", "checkpoint-write")


def maybe_kill(point: str, step: int) -> None:
    wanted = os.environ.get(VARIABLE)
    if not wanted:
        return
    name, _, at = wanted.rpartition(":")
    if name == point and at.isdigit() and int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL)
