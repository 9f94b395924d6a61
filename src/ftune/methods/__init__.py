"""Adaptation techniques. Each module registers one; importing this package registers all."""

from ftune.methods import adapter, bitfit, dora, freeze, full, ia3, lora, prefix, prompt, ptuning, qlora, rslora  # noqa: F401
from ftune.methods.base import (
    Capabilities,
    Method,
    build_method,
    get_method_class,
    method_names,
    register_method,
)

__all__ = [
    "Capabilities",
    "Method",
    "build_method",
    "get_method_class",
    "method_names",
    "register_method",
]
