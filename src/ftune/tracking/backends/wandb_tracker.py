"""Weights & Biases: offline unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads an
offline run later). transformers' WandbCallback logs each step into ftune's run; the finished
run's figures go to its summary. Project: ``train.experiment``, else ``WANDB_PROJECT``, else ftune."""

from __future__ import annotations

import os
from pathlib import Path

from ftune.tracking.base import FinalFigures, Tracker, register_tracker
from ftune.tracking.values import config_params


@register_tracker("wandb")
class WandbTracker(Tracker):
    package = install = "wandb"
    wandb_run = None

    def callbacks(self):
        os.environ.setdefault("WANDB_MODE", "offline")
        from transformers.integrations import WandbCallback

        return [WandbCallback()]  # finds ftune's run started: logs into it

    def start(self) -> None:
        os.environ.setdefault("WANDB_MODE", "offline")
        import wandb

        earlier = self.recorded().get("id") if self.run.resume_from is not None else None
        project = self.config.train.experiment or os.environ.get("WANDB_PROJECT") or "ftune"
        self.wandb_run = wandb.init(project=project, name=self.run.path.name, dir=str(self.run.path),
                                    config=config_params(self.config), id=earlier,
                                    resume="allow" if earlier else None)
        self.record(id=self.wandb_run.id, project=project)
        mode = os.environ["WANDB_MODE"]
        upload = f"; upload it with: wandb sync {self.run.path / 'wandb' / 'offline-run-*'}"
        self.echo(f"ftune: wandb run {self.run.path.name} in project {project!r} ({mode})"
                  + (upload if mode == "offline" else ""))

    def finish(self, run_dir: Path, figures: FinalFigures) -> None:
        self.wandb_run.summary.update({**figures.scalars, **figures.texts})
        self.wandb_run.finish(exit_code=0)
        self.wandb_run = None

    def fail(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=1)
            self.wandb_run = None
