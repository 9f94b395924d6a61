"""The MLflow model ftune registers (``train.register_model``): a finished classification run,
answered by ``ftune.predict``. Logged as code (MLflow's models from code): MLflow runs this file
when it loads the model, with the run's ``model/`` directory as the artifact ``model``.

    model = mlflow.pyfunc.load_model("models:/reviews/1")
    model.predict(["a warm, funny film"])  # [{"positive": 0.93, "negative": 0.07}]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel


class RunClassifier(PythonModel):
    def load_context(self, context) -> None:
        model_dir = Path(context.artifacts["model"])
        if model_dir.name == "model":
            self.run_dir = model_dir.parent
        else:  # ftune.predict reads <run>/model/
            self.run_dir = Path(tempfile.mkdtemp(prefix="ftune-run-"))
            (self.run_dir / "model").symlink_to(model_dir.resolve(), target_is_directory=True)

    def predict(self, context, model_input: list[str], params=None) -> list[dict[str, float]]:
        """Each text's labels with their probabilities, most likely first."""
        import ftune

        return [dict(ranked) for _, ranked in ftune.predict(self.run_dir, list(model_input))]


mlflow.models.set_model(RunClassifier())
