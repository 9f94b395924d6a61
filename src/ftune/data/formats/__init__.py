"""Generative data formats, one module each, found and registered the first time the registry is asked."""

from ftune.data.formats.base import (
    DataFormat,
    RowProblem,
    format_names,
    get_format,
    register_format,
    registered_formats,
)

__all__ = [
    "DataFormat",
    "RowProblem",
    "format_names",
    "get_format",
    "register_format",
    "registered_formats",
]
