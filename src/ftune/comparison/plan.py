"""What a comparison runs: one config per technique and seed, all validated before anything runs."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from ftune.config import Config
from ftune.settings import config_from_dict, config_to_dict
from ftune.errors import ConfigError

@dataclass(frozen=True)
class Slot:
    """One technique with one seed: a subprocess and a directory of its own."""

    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-seed{self.seed}"


@dataclass
class ComparePlan:
    config: Config  # the shared settings (model, data, budget); method.name is replaced per slot
    methods: list[str]
    seeds: list[int]

    @property
    def slots(self) -> list[Slot]:
        return [Slot(m, s) for s in self.seeds for m in self.methods]

    def slot_config(self, slot: Slot) -> Config:
        """The shared config with this technique (its own options and default learning rate) and seed."""
        config = copy.deepcopy(self.config)
        if config.method.name != slot.method:
            config.method.options = {}
        config.method.name = slot.method
        config.train.seed = slot.seed
        if config.data.split_seed is None:  # every seed on the same split: seeds vary the training only
            config.data.split_seed = self.seeds[0]
        return config

    def to_json(self) -> str:
        return json.dumps({"config": config_to_dict(self.config), "methods": self.methods, "seeds": self.seeds},
                          indent=2)

    @classmethod
    def from_file(cls, path: Path) -> "ComparePlan":
        data = json.loads(path.read_text())
        return cls(config_from_dict(data["config"]), data["methods"], data["seeds"])


def parse_methods(text: str) -> list[str]:
    """``full,lora,dora`` or ``all``: registered names, in the order given, each once."""
    from ftune.methods import method_names

    if text.strip() == "all":
        return method_names()  # every registered technique: a new module joins by itself
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in method_names()]
    if unknown:
        raise ConfigError([f"methods: unknown technique {n!r}; choose from {', '.join(method_names())}, or all"
                           for n in unknown])
    if not names:
        raise ConfigError(["methods: give at least one technique, e.g. methods=lora,full"])
    return list(dict.fromkeys(names))


def build_plan(config: Config, methods: list[str], seeds: int) -> ComparePlan:
    """Check every technique against the config now: an impossible combination stops the
    comparison before the first run, not after an hour. Every technique gets the config's
    budget (epochs, or train.max_steps / train.max_minutes when set)."""
    from ftune.settings.checks import method_capability_problems
    from ftune.methods import get_method_class

    if seeds < 1:
        raise ConfigError([f"--seeds = {seeds}: must be at least 1"])
    plan = ComparePlan(config, methods, [config.train.seed + k for k in range(seeds)])
    problems = []
    for name in methods:
        slot_config = plan.slot_config(Slot(name, config.train.seed))
        problems += [f"{name}: {p}" for p in method_capability_problems(get_method_class(name), slot_config)]
    if problems:
        raise ConfigError(problems)
    return plan
