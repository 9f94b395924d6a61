"""Tracking backends, one module each; see ``ftune.tracking.base``."""
