"""Load a config from YAML and dotted overrides, validate all of it, report every problem.

Validation is complete before anything heavy is imported: a typo costs milliseconds. Every
problem names the key and where it was set (``my.yaml:12`` or ``override 'a.b=c'``), and all
problems are reported together.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from ftune.config.schema import SHORTHAND_SECTIONS, Config, MethodConfig
from ftune.errors import ConfigError
from ftune.settings.coerce import coerce, did_you_mean
from ftune.settings.setting import Setting




def load_config(
    path: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None, *, check: bool = True
) -> Config:
    """Resolve defaults <- YAML file (or a nested dict, as the YAML would read) <- overrides
    into a validated ``Config``.

    ``check=False`` skips the cross-setting checks (files exist, model is known): used to
    reload a finished run's config on another machine. Raises ``ConfigError`` listing every
    problem found.
    """
    problems: list[str] = []
    settings: dict[str, Setting] = {}
    if isinstance(path, dict):
        settings.update(dict_settings(path, "config dict"))
    elif path is not None:
        settings.update(_read_yaml(Path(path), problems))
    for text in overrides or []:
        parsed = parse_override(text, problems)
        if parsed is not None:
            settings[parsed[0]] = parsed[1]
    return resolve_settings(settings, problems, check=check)


def dict_settings(data: dict[str, Any], origin: str) -> dict[str, Setting]:
    """``{"train": {"epochs": 3}}`` as dotted settings; a technique's options sit beside
    ``method.name``, and ``{"model": "smollm2-135m"}`` is short for its name, as in YAML."""
    settings = {}
    for section, values in data.items():
        if section in SHORTHAND_SECTIONS and not isinstance(values, dict):
            values = {SHORTHAND_SECTIONS[section]: values}
        settings.update({f"{section}.{key}": Setting(value, origin) for key, value in (values or {}).items()})
    return settings


def resolve_settings(settings: dict[str, Setting], problems: list[str] | None = None, *, check: bool = True) -> Config:
    """Build and validate a ``Config`` from dotted keys; raise ``ConfigError`` on any problem."""
    problems = problems if problems is not None else []
    config = _build(settings, problems)
    if check and not problems:
        from ftune.settings.checks import check_config

        problems.extend(check_config(config, settings))
    if problems:
        raise ConfigError(problems)
    return config


def _read_yaml(path: Path, problems: list[str]) -> dict[str, Setting]:
    if not path.is_file():
        raise ConfigError([f"{path}: config file not found"])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x}); save the config as UTF-8"]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError([f"{where}: not valid YAML ({getattr(err, 'problem', err)})"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: nested too deeply to be a config"]) from None
    settings: dict[str, Setting] = {}
    if root is None:
        return settings
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([f"{path}:{root.start_mark.line + 1}: the top level must be a mapping of sections"])
    _flatten_node(root, "", path.name, settings)
    return settings


def _flatten_node(node: yaml.Node, prefix: str, file: str, out: dict[str, Setting]) -> None:
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        origin = f"{file}:{key_node.start_mark.line + 1}"
        is_shorthand = prefix == "" and key in SHORTHAND_SECTIONS
        if isinstance(value_node, yaml.MappingNode):
            _flatten_node(value_node, key + ".", file, out)
        elif is_shorthand and isinstance(value_node, yaml.ScalarNode):
            out[f"{key}.{SHORTHAND_SECTIONS[key]}"] = Setting(_construct(value_node), origin)
        else:
            out[key] = Setting(_construct(value_node), origin)


def _construct(node: yaml.Node) -> Any:
    """The node's Python value, constructed directly (a serialize-and-reload round trip fails on
    some valid nodes, such as the empty value in ``(:``)."""
    return yaml.SafeLoader("").construct_document(node)


def parse_override(text: str, problems: list[str]) -> tuple[str, Setting] | None:
    origin = f"override '{text}'"
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        problems.append(f"{origin}: expected key=value, e.g. train.epochs=3")
        return None
    if key in SHORTHAND_SECTIONS:
        key = f"{key}.{SHORTHAND_SECTIONS[key]}"
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. an unbalanced bracket): take the text as given
    return key, Setting(value, origin)


def _build(settings: dict[str, Setting], problems: list[str]) -> Config:
    config = Config()
    method_options: dict[str, Setting] = {}
    known = _known_keys()
    for key, setting in settings.items():
        section_name, _, field_name = key.partition(".")
        section = getattr(config, section_name, None) if section_name in known["sections"] else None
        if section is None or not field_name:
            problems.append(_unknown_key(key, setting, known["all"]))
            continue
        if isinstance(section, MethodConfig) and field_name != "name":
            method_options[field_name] = setting
            continue
        field = next((f for f in fields(section) if f.name == field_name and f.name != "options"), None)
        if field is None:
            problems.append(_unknown_key(key, setting, known["all"]))
            continue
        value, error = coerce(setting.value, _field_type(type(section), field_name))
        if error:
            problems.append(f"{setting.origin}: {key} = {setting.value!r}: {error}")
        else:
            setattr(section, field_name, value)
    name_origin = settings["method.name"].origin + ": " if "method.name" in settings else ""
    _build_method_options(config, method_options, name_origin, problems)
    return config


def _build_method_options(
    config: Config, given: dict[str, Setting], name_origin: str, problems: list[str]
) -> None:
    from ftune.methods.base import get_method_class, method_names

    names = method_names()
    if config.method.name not in names:
        problems.append(
            f"{name_origin}method.name = {config.method.name!r}: unknown technique; choose one of "
            + ", ".join(names)
            + "."
            + did_you_mean(config.method.name, names)
        )
        return
    options_cls = get_method_class(config.method.name).Options
    option_fields = {f.name: f for f in fields(options_cls)}
    values: dict[str, Any] = {}
    for option, setting in given.items():
        key = f"method.{option}"
        if option not in option_fields:
            allowed = ", ".join(sorted(option_fields)) or "none"
            owners = [n for n in names if option in {f.name for f in fields(get_method_class(n).Options)}]
            hint = (f" It is an option of {', '.join(owners)}." if owners
                    else did_you_mean(option, list(option_fields), prefix="method."))
            problems.append(
                f"{setting.origin}: {key}: not an option of method {config.method.name!r}.{hint} "
                f"Its options: {allowed}"
            )
            continue
        value, error = coerce(setting.value, typing.get_type_hints(options_cls)[option])
        if error:
            problems.append(f"{setting.origin}: {key} = {setting.value!r}: {error}")
        else:
            values[option] = value
    if not problems:
        options = options_cls(**values)
        config.method.options = dataclasses.asdict(options)


def _known_keys() -> dict[str, list[str]]:
    sections = [f.name for f in fields(Config)]
    keys = []
    for section in sections:
        for f in fields(getattr(Config(), section).__class__):
            if f.name != "options":
                keys.append(f"{section}.{f.name}")
    from ftune.methods.base import get_method_class, method_names

    for name in method_names():
        keys.extend(f"method.{f.name}" for f in fields(get_method_class(name).Options))
    return {"sections": sections, "all": sorted(set(keys))}


# Names other tools use for ftune's settings: suggested before any spelling match.
ALIASES = {
    "lr": "learning_rate", "num_train_epochs": "epochs", "num_epochs": "epochs", "bs": "batch_size",
    "per_device_train_batch_size": "batch_size", "grad_accum": "gradient_accumulation_steps",
    "lora_r": "r", "rank": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "max_seq_length": "max_length",
    "seq_len": "max_length", "warmup": "warmup_ratio", "lr_scheduler_type": "scheduler",
}


def _unknown_key(key: str, setting: Setting, known: list[str]) -> str:
    section, _, name = key.rpartition(".")
    alias = ALIASES.get(name)
    if alias:
        candidates = [k for k in known if k.endswith("." + alias)]
        preferred = [k for k in candidates if k.startswith(section + ".")] or candidates
        if preferred:
            return f'{setting.origin}: {key}: unknown key. Did you mean "{preferred[0]}"?'
    return f"{setting.origin}: {key}: unknown key." + did_you_mean(key, known)


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]
