"""Registries fill themselves: every module of a registry's package is imported once, the
first time the registry is asked, and each registers what it defines. Adding a technique or
a data format is one new module, with no import line anywhere else."""

from __future__ import annotations

import importlib
import pkgutil

_DONE: set[str] = set()


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (once per process)."""
    if package in _DONE:
        return
    _DONE.add(package)
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{info.name}")
