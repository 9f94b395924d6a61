"""Generative data formats, one module each; importing this package registers them all."""

from ftune.data.formats import alpaca, chat, hh, preference, prompt_completion, text  # noqa: F401
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
