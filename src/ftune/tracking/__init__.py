"""Experiment tracking (``train.report_to``): TensorBoard, MLflow, wandb, one module each in
``ftune.tracking.backends`` behind a small registry. The training loop adds ``Tracking.callbacks``
to its Trainer (transformers' own per-step callbacks, logging into ftune's run); a finished run
calls ``Tracking.finish`` with its metrics; only the main process of a distributed run records.
Nothing here imports a backend's package until a run uses it."""

from ftune.tracking.base import FinalFigures, Tracker, get_tracker_class, register_tracker, tracker_names
from ftune.tracking.session import (
    ParentTracking,
    Tracking,
    fail_open_tracking,
    missing_package,
    open_comparison_tracking,
    open_search_tracking,
    open_tracking,
    tracking_for_run,
)

__all__ = [
    "FinalFigures",
    "ParentTracking",
    "Tracker",
    "Tracking",
    "fail_open_tracking",
    "get_tracker_class",
    "missing_package",
    "open_comparison_tracking",
    "open_search_tracking",
    "open_tracking",
    "register_tracker",
    "tracker_names",
    "tracking_for_run",
]
