"""Configuration: the typed schema of every setting, and units. Reading YAML and overrides,
checking them against the registries and printing a config is `ftune.settings`."""

from ftune.config.schema import Config, epochs, split_seed

__all__ = ["Config", "epochs", "split_seed"]
