"""Adaptation techniques. Each module registers one; importing this package registers all."""

from ftune.methods import bitfit, freeze, full, lora  # noqa: F401  (registration)
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
