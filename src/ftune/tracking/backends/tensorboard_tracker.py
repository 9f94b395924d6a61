"""TensorBoard: event files in ``<run>/tensorboard/``. transformers' TensorBoardCallback writes
the per-step loss, learning rate and evaluations (``train/*``, ``eval/*``); the finished run
adds its held-out, baseline and training figures (``final/*``) and config. ``tensorboard
--logdir runs`` shows every run beside the others."""

from __future__ import annotations

from pathlib import Path

from ftune.tracking.base import FinalFigures, Tracker, register_tracker

DIRECTORY = "tensorboard"
# One chart per class and per baseline would bury the headline figures; metrics.json keeps them.
NOT_CHARTED = (".per_class.", "training.memory_plan.")


@register_tracker("tensorboard")
class TensorBoardTracker(Tracker):
    package = install = "tensorboard"

    @property
    def directory(self) -> Path:
        return self.run.path / DIRECTORY

    def callbacks(self):
        from transformers.integrations import TensorBoardCallback

        callback = TensorBoardCallback()
        callback.logging_dir = str(self.directory)  # created as training begins, with the run directory
        return [callback]

    def start(self) -> None:
        self.echo(f"ftune: TensorBoard events in {self.directory}; see them with: "
                  f"tensorboard --logdir {self.run.path.parent}")

    def finish(self, run_dir: Path, figures: FinalFigures) -> None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir / DIRECTORY))
        try:
            for key, value in figures.scalars.items():
                if not any(part in key for part in NOT_CHARTED):
                    writer.add_scalar(f"final/{key}", value, figures.step)
            if "verdict.text" in figures.texts:
                writer.add_text("final/verdict", figures.texts["verdict.text"], figures.step)
            config = run_dir / "config.yaml"
            if config.is_file():  # four-space indent: a code block in TensorBoard's markdown
                writer.add_text("ftune/config", "\n".join("    " + line for line in config.read_text().splitlines()))
        finally:
            writer.close()
