"""Configuration: the typed schema of every setting, and units. Reading YAML and overrides,
checking them against the registries and printing a config is `ftune.settings`."""

from ftune.config.schema import Config

__all__ = ["Config"]
