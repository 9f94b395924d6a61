"""Adaptation techniques. One module each, found and registered the first time the registry is asked (`ftune.discovery`)."""

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
