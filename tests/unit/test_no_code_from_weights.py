"""Nothing executes what it loads (issue 14): a model directory whose weights are a malicious
pickle (`pytorch_model.bin`) is refused or ignored, never run, and remote code stays off."""

from __future__ import annotations

import pickle

import pytest


class _Payload:
    """Unpickling this writes a marker file: proof that the pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pytorch_model_bin_is_never_unpickled(tiny_bert_dir, tmp_path):
    import shutil

    from ftune.errors import FtuneError
    from ftune.models.load import load_classifier

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model_dir)
    (model_dir / "model.safetensors").unlink()
    marker = tmp_path / "executed"
    with open(model_dir / "pytorch_model.bin", "wb") as f:
        pickle.dump({"weight": _Payload(marker)}, f)
    with pytest.raises((FtuneError, OSError, ValueError, RuntimeError, pickle.UnpicklingError)):
        load_classifier(str(model_dir), ["negative", "positive"])
    assert not marker.exists(), "loading the model ran code from its weights file"
    with open(model_dir / "pytorch_model.bin", "rb") as f:  # the payload is live: plain unpickling runs it
        pickle.load(f)
    assert marker.exists()


def test_remote_code_is_off_unless_asked():
    from ftune.settings import load_config

    assert load_config(None, []).model.trust_remote_code is False
