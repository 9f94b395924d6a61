"""Settings: YAML + dotted overrides resolved into a checked ``Config``, and printed back.

Sits above the registries (data formats, templates, models, techniques) it checks names and
options against."""

from ftune.settings.dump import config_from_dict, config_to_dict, render_config
from ftune.settings.load import load_config

__all__ = ["config_from_dict", "config_to_dict", "load_config", "render_config"]
