"""Configuration: typed schema, YAML + dotted overrides, validation, printing."""

from ftune.config.load import load_config
from ftune.config.schema import Config
from ftune.config.dump import config_to_dict, config_from_dict, render_config

__all__ = ["Config", "config_from_dict", "config_to_dict", "load_config", "render_config"]
