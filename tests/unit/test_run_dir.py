"""Run directories: a model appears only when completely written."""

from __future__ import annotations

import json

from ftune.runs.run_dir import MODEL_INFO, RunDir, file_sha256


def test_model_is_invisible_until_published(tmp_path):
    run = RunDir.create(tmp_path, "my run/1")
    assert run.path.name.endswith("-my-run-1")
    staging = run.staging_model_dir()
    (staging / "weights.safetensors").write_bytes(b"123")
    assert not run.model_dir.exists()  # an interruption here leaves nothing loadable
    run.publish_model(staging, {"method": "lora"})
    assert json.loads((run.model_dir / MODEL_INFO).read_text()) == {"method": "lora"}
    assert (run.model_dir / "weights.safetensors").read_bytes() == b"123"
    assert not staging.exists()


def test_two_runs_in_the_same_second_get_distinct_directories(tmp_path):
    assert RunDir.create(tmp_path, "x").path != RunDir.create(tmp_path, "x").path


def test_json_writes_are_complete_files(tmp_path):
    run = RunDir.create(tmp_path, "x")
    run.write_json("metrics.json", {"accuracy": 0.9})
    assert json.loads((run.path / "metrics.json").read_text()) == {"accuracy": 0.9}
    assert sorted(p.name for p in run.path.iterdir()) == ["metrics.json", "status.json"]  # no temp files left
    assert len(file_sha256(run.path / "metrics.json")) == 64
