"""Search spaces: the default each technique gets from the registry, and what SPACE.yaml changes.

    train.learning_rate: {low: 1e-5, high: 1e-3, log: true}   # a range, sampled on a log scale
    train.warmup_ratio: {low: 0, high: 0.2}                     # a range, uniform
    method.r: [4, 8, 16]                                        # choices
    method.dropout: null                                        # not searched: keeps the config's value

Keys are the config's dotted keys (nested sections work too). Every value is put through the
settings loader with the file and line as its origin, so a typo or an impossible value fails
with the loader's own message ("space.yaml:3: train.lr: unknown key. Did you mean ...") before
anything heavy loads.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ftune.config import Config
from ftune.errors import ConfigError

# The learning rate is searched on a log scale from a tenth to three times the config's (or the
# technique's default for the objective): higher rates diverge more often than lower ones help.
LEARNING_RATE_SPAN = (0.1, 3.0)
WARMUP_RANGE = (0.0, 0.2)
# Technique options searched wherever a technique has them, found by name in its Options: a new
# technique with an option called ``r`` or ``dropout`` is searched on it with no edit here.
OPTION_CHOICES: dict[str, tuple[float, ...]] = {
    "r": (4, 8, 16, 32), "alpha": (8, 16, 32, 64), "virtual_tokens": (8, 16, 32), "reduction_factor": (8, 16, 32),
}
OPTION_RANGES: dict[str, tuple[float, float]] = {"dropout": (0.0, 0.2)}
RANGE_KEYS = ("low", "high", "log", "step")
BASE_ORIGIN = "config"


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a range (``low``..``high``, floats or whole numbers, optionally on a
    log scale or in steps) or a list of ``choices``."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial) -> Any:
        """This setting's value for an Optuna trial."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        if self.integer and value != int(value):
            return False
        return not self.step or abs((value - self.low) / self.step - round((value - self.low) / self.step)) < 1e-9

    def describe(self) -> str:
        """``one of 4, 8, 16`` or ``log-uniform 0.0001 .. 0.003``."""
        if self.choices is not None:
            return "one of " + ", ".join(short_value(c) for c in self.choices)
        scale = ("integer " if self.integer else "") + ("log-uniform" if self.log else "uniform")
        steps = f" in steps of {short_value(self.step)}" if self.step else ""
        return f"{scale} {short_value(self.low)} .. {short_value(self.high)}{steps}"

    def as_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        extra = {"log": self.log, "step": self.step, "integer": self.integer}
        return {"low": self.low, "high": self.high, **{k: v for k, v in extra.items() if v}}

    @classmethod
    def from_dict(cls, key: str, data: dict[str, Any]) -> "Dimension":
        if "choices" in data:
            return cls(key, choices=tuple(data["choices"]))
        return cls(key, data["low"], data["high"], bool(data.get("log")), data.get("step"), bool(data.get("integer")))


SearchSpace = dict[str, Dimension]


def short_value(value: Any) -> str:
    """A number as a person reads it in a table: 0.000316 -> 3.16e-04, 0.12345 -> 0.1235, 16 -> 16."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.2e}" if abs(value) < 0.01 else f"{value:.4g}"


def short_key(key: str, keys: list[str]) -> str:
    """``train.learning_rate`` -> ``learning_rate`` where no other key ends in the same name."""
    name = key.rsplit(".", 1)[-1]
    return name if sum(k.rsplit(".", 1)[-1] == name for k in keys) == 1 else key


# ---------------------------------------------------------------- values of a config

def config_value(config: Config, key: str) -> Any:
    """The value of a dotted key; a technique's options are ``method.<option>``."""
    section, name = key.split(".", 1)
    if section == "method" and name != "name":
        return config.method.options[name]
    return getattr(getattr(config, section), name)


def with_values(config: Config, values: dict[str, Any]) -> Config:
    """A copy of ``config`` with the dotted keys set (types as the schema declares)."""
    from ftune.settings import config_from_dict, config_to_dict

    data = config_to_dict(config)
    for key, value in values.items():
        section, name = key.split(".", 1)
        data[section][name] = value
    return config_from_dict(data)


def settled(config: Config, objective: str) -> Config:
    """A copy with what the objective fills in (the technique's default learning rate, the
    default max_length) filled in: the values the default config trains with."""
    from ftune.training.objective import settle_defaults

    return settle_defaults(copy.deepcopy(config), objective)


# ---------------------------------------------------------------- the default space

def default_space(config: Config, objective: str) -> SearchSpace:
    """The learning rate (log scale, around the config's or the technique's default), the warmup
    share, and the technique's options found in ``OPTION_CHOICES`` / ``OPTION_RANGES``. Each
    holds the config's own value, so the default config is a point of the space."""
    from ftune.methods import get_method_class

    current = settled(config, objective)
    rate = current.train.learning_rate
    warmup = current.train.warmup_ratio
    space = {"train.learning_rate": Dimension("train.learning_rate", rate * LEARNING_RATE_SPAN[0],
                                              rate * LEARNING_RATE_SPAN[1], log=True),
             "train.warmup_ratio": Dimension("train.warmup_ratio", min(WARMUP_RANGE[0], warmup),
                                             max(WARMUP_RANGE[1], warmup))}
    options_cls = get_method_class(config.method.name).Options
    for field in dataclasses.fields(options_cls):
        value = config.method.options.get(field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        key = f"method.{field.name}"
        if field.name in OPTION_CHOICES:
            choices = sorted({type(value)(c) for c in OPTION_CHOICES[field.name]} | {value})
            space[key] = Dimension(key, choices=tuple(choices))
        elif field.name in OPTION_RANGES:
            low, high = OPTION_RANGES[field.name]
            space[key] = Dimension(key, min(low, value), max(high, value), integer=isinstance(value, int))
    return space


def default_params(space: SearchSpace, config: Config, objective: str) -> tuple[dict[str, Any], list[str]]:
    """The default config as a point of ``space``, and the keys whose value lies outside it."""
    current = settled(config, objective)
    params, outside = {}, []
    for key, dimension in space.items():
        value = config_value(current, key)
        if dimension.contains(value):
            params[key] = value
        else:
            outside.append(f"{key} = {short_value(value)} (searched: {dimension.describe()})")
    return params, outside


# ---------------------------------------------------------------- SPACE.yaml

def build_space(config: Config, objective: str, path: str | Path | None = None) -> SearchSpace:
    """The default space with SPACE.yaml's changes: a key given replaces (or adds) that
    dimension, ``null`` removes it. Raises ``ConfigError`` naming every problem, each with the
    file and line."""
    space = default_space(config, objective)
    if path is None:
        return space
    changes = read_space_file(Path(path), config)
    for key, dimension in changes.items():
        if dimension is None:
            space.pop(key, None)
        else:
            space[key] = dimension
    if not space:
        raise ConfigError([f"{path}: nothing left to search; give at least one range or list of choices"])
    return space


def read_space_file(path: Path, config: Config) -> dict[str, Dimension | None]:
    """SPACE.yaml as dimensions (None: a default dimension removed), each value checked."""
    entries = _read_entries(path)
    checker = _ValueChecker(config)
    problems: list[str] = []
    out: dict[str, Dimension | None] = {}
    for key, value, origin in entries:
        found, errors = _dimension(key, value, origin, checker)
        problems += errors
        if not errors:
            out[key] = found
    if problems:
        raise ConfigError(problems)
    return out


def _read_entries(path: Path) -> list[tuple[str, Any, str]]:
    """(dotted key, value, "space.yaml:LINE") for each searched setting in the file."""
    if not path.is_file():
        raise ConfigError([f"{path}: search space file not found"])
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text; save the search space as UTF-8"]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark else path.name
        raise ConfigError([f"{where}: not valid YAML ({getattr(err, 'problem', err)})"]) from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([f"{path.name}:{root.start_mark.line + 1}: the top level must map keys "
                           "(train.learning_rate, method.r, ...) to ranges or choices"])
    entries: list[tuple[str, Any, str]] = []
    _flatten(root, "", path.name, entries)
    return entries


def _flatten(node: yaml.MappingNode, prefix: str, file: str, out: list) -> None:
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        is_range = isinstance(value_node, yaml.MappingNode) and any(
            isinstance(k, yaml.ScalarNode) and k.value in RANGE_KEYS for k, _ in value_node.value)
        if isinstance(value_node, yaml.MappingNode) and not is_range:  # a section: train: {learning_rate: ...}
            _flatten(value_node, key + ".", file, out)
        else:
            out.append((key, yaml.SafeLoader("").construct_document(value_node), f"{file}:{key_node.start_mark.line + 1}"))


class _ValueChecker:
    """Puts one setting through the settings loader on top of the config: the value as the
    schema types it, or the loader's messages with the space file's origin."""

    def __init__(self, config: Config):
        from ftune.settings import config_to_dict
        from ftune.settings.load import dict_settings

        self.config = config
        self.base = dict_settings(config_to_dict(config), BASE_ORIGIN)

    def __call__(self, key: str, value: Any, origin: str) -> tuple[Any, list[str]]:
        from ftune.settings.load import resolve_settings
        from ftune.settings.setting import Setting

        settings = {**self.base, key: Setting(value, origin)}
        try:
            resolved = resolve_settings(settings)
        except ConfigError as error:
            return None, [_with_origin(p, origin) for p in error.problems]
        return config_value(resolved, key), []


def _with_origin(problem: str, origin: str) -> str:
    problem = problem.removeprefix(f"{BASE_ORIGIN}: ")
    return problem if problem.startswith(origin) else f"{origin}: {problem}"


def _dimension(key: str, value: Any, origin: str, check) -> tuple[Dimension | None, list[str]]:
    """A dimension from one SPACE.yaml entry, or the problems with it."""
    if key == "method.name":
        return None, [f"{origin}: method.name: tune one technique at a time (set it in the config); "
                      "`ftune compare` measures techniques side by side"]
    if value is None:  # not searched; the key must still exist
        try:
            current = config_value(check.config, key)
        except (AttributeError, KeyError, ValueError):
            current = None
        return None, check(key, current, origin)[1]
    if isinstance(value, list):
        return _choices(key, value, origin, check)
    if isinstance(value, dict):
        return _range(key, value, origin, check)
    known, problems = check(key, value, origin)  # an unknown key says so first
    return None, problems or [f"{origin}: {key} = {value!r}: give a list of choices ([4, 8, 16]), a range "
                              "({low: 1e-5, high: 1e-3, log: true}), or null to keep the config's value"]


def _choices(key: str, values: list, origin: str, check) -> tuple[Dimension | None, list[str]]:
    if not values:
        return None, [f"{origin}: {key}: the list of choices is empty"]
    problems, typed = [], []
    for value in values:
        if isinstance(value, (list, dict)):
            problems.append(f"{origin}: {key}: each choice must be a single value, not {value!r}")
            continue
        result, errors = check(key, value, origin)
        problems += errors
        if not errors and result not in typed:
            typed.append(result)
        if errors and any(words in errors[0] for words in ("unknown key", "not an option")):
            break  # one message for a misspelled key, not one per choice
    return (None, problems) if problems else (Dimension(key, choices=tuple(typed)), [])


def _range(key: str, spec: dict, origin: str, check) -> tuple[Dimension | None, list[str]]:
    unknown = [k for k in spec if k not in RANGE_KEYS]
    if unknown:
        return None, [f"{origin}: {key}: unknown range key(s) {', '.join(map(repr, unknown))}; a range has low and "
                      "high, and optionally log (true/false) and step"]
    missing = [k for k in ("low", "high") if spec.get(k) is None]
    if missing:
        return None, [f"{origin}: {key}: the range needs {' and '.join(missing)}"]
    (low, low_errors), (high, high_errors) = check(key, spec["low"], origin), check(key, spec["high"], origin)
    if low_errors or high_errors:
        return None, list(dict.fromkeys(low_errors + high_errors))
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (low, high)):
        return None, [f"{origin}: {key}: a range needs a numeric setting; give a list of choices instead"]
    log, step = spec.get("log", False), spec.get("step")
    problems = []
    if not isinstance(log, bool):
        problems.append(f"{origin}: {key}: log = {log!r}: must be true or false")
    if not low < high:
        problems.append(f"{origin}: {key}: low = {low!r} must be below high = {high!r}")
    if log is True and low <= 0:
        problems.append(f"{origin}: {key}: a log scale needs low above 0 (low = {low!r})")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        problems.append(f"{origin}: {key}: step = {step!r}: must be a number above 0")
    elif step is not None and log is True:
        problems.append(f"{origin}: {key}: give either log: true or a step, not both")
    integer = isinstance(low, int) and isinstance(high, int)
    return (None, problems) if problems else (Dimension(key, low, high, log, step, integer), [])


def space_summary(space: SearchSpace) -> str:
    """One line: ``learning_rate log-uniform 1e-4 .. 3e-3; r one of 4, 8, 16, 32; ...``."""
    keys = list(space)
    return "; ".join(f"{short_key(k, keys)} {d.describe()}" for k, d in space.items())

