"""Turn a ``Config`` back into plain data and into commented YAML (``ftune config``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import yaml

from ftune.config.schema import Config


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict; technique options sit beside ``method.name`` as the user writes them."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(config):
        values = dataclasses.asdict(getattr(config, section.name))
        if section.name == "method":
            values = {"name": values["name"], **values["options"]}
        out[section.name] = values
    return out


def config_from_dict(data: dict[str, Any], *, check: bool = False, origin: str = "config") -> Config:
    """Inverse of ``config_to_dict``, validated like any other config."""
    from ftune.settings.load import dict_settings, resolve_settings

    settings = dict_settings(data, origin)
    return resolve_settings(settings, check=check)


def render_config(config: Config) -> str:
    """YAML of the resolved config, each key followed by its one-line documentation."""
    from ftune.methods.base import get_method_class

    lines: list[str] = []
    data = config_to_dict(config)
    for section in dataclasses.fields(config):
        lines.append(f"{section.name}:")
        docs = {f.name: registry_help(f.metadata.get("help", "")) for f in dataclasses.fields(getattr(config, section.name))}
        if section.name == "method":
            options_cls = get_method_class(config.method.name).Options
            docs.update({f.name: f.metadata.get("help", "") for f in dataclasses.fields(options_cls)})
        for key, value in data[section.name].items():
            if isinstance(value, str) and not value.isprintable():
                rendered = f"{key}: {json.dumps(value)}"  # JSON strings are YAML double-quoted strings
            else:
                rendered = yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip()[1:-1]
            comment = f"  # {docs[key]}" if docs.get(key) else ""
            lines.append(f"  {rendered}{comment}")
    return "\n".join(lines) + "\n"


def registry_help(text: str) -> str:
    """A setting's help with ``{methods}``, ``{formats}``, ``{templates}`` and ``{trackers}``
    filled in from the registries, so the list a user reads is the list ftune accepts."""
    if not any(key in text for key in ("{methods}", "{formats}", "{templates}", "{trackers}")):
        return text
    from ftune.data.formats import format_names
    from ftune.data.templates import template_names
    from ftune.methods import method_names
    from ftune.tracking import tracker_names

    lists = {"{methods}": method_names(), "{formats}": format_names(),
             "{templates}": [n for n in template_names() if n != "auto"], "{trackers}": tracker_names()}
    for key, names in lists.items():
        text = text.replace(key, ", ".join(names))
    return text
