"""Training options on a tiny random encoder, through the library API (no subprocess)."""

from __future__ import annotations

import json

import pytest

from ftune.settings import load_config
from ftune.recipes.dispatch import train_for_objective as train_classifier
from tests.conftest import FIXTURES

QUIET = dict(echo=lambda *a, **k: None)


def run(tmp_path, tiny_bert_dir, *overrides):
    config = load_config(None, [f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                                f"run.dir={tmp_path / 'runs'}", "train.batch_size=4", "model.max_length=32",
                                "train.eval_batch_size=16", *overrides])
    return train_classifier(config, **QUIET)


def test_max_steps_and_gradient_accumulation(tmp_path, tiny_bert_dir):
    result = run(tmp_path, tiny_bert_dir, "train.max_steps=3", "train.gradient_accumulation_steps=2")
    training = result.metrics["training"]
    assert training["optimizer_steps"] == 3
    assert training["epochs"] == pytest.approx(3 * 8 / 36, abs=0.01)  # 3 steps x 8 rows of 36


def test_epochs_give_the_expected_step_count_and_an_eval_per_epoch(tmp_path, tiny_bert_dir):
    result = run(tmp_path, tiny_bert_dir, "train.epochs=2")
    assert result.metrics["training"]["optimizer_steps"] == 2 * 9  # 36 rows / batch 4
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "eval_accuracy" in r] == [9, 18]


def test_early_stopping_ends_training_when_the_metric_stalls(tmp_path, tiny_bert_dir):
    # A learning rate this small cannot change the accuracy: the second evaluation brings no gain.
    result = run(tmp_path, tiny_bert_dir, "train.epochs=10", "train.learning_rate=1e-12",
                 "train.early_stopping_patience=1")
    assert result.metrics["training"]["optimizer_steps"] == 2 * 9
    # nor the training loss: the run says it learned nothing beyond the label frequencies
    training = result.metrics["training"]
    assert training["learned_beyond_prior"] is False
    assert training["final_training_loss"] >= 0.95 * training["prior_loss"] > 0


def _evaluations(result) -> dict[int, float]:
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["eval_loss"] for r in log if "eval_loss" in r}


@pytest.mark.parametrize("keep", ["last", "best"])
def test_keep_picks_the_weights_the_held_out_figures_describe(tmp_path, tiny_bert_dir, keep):
    # train.metric=loss is not offered for classifiers; the held-out loss is exact where
    # accuracy on 4 rows ties, so the kept step shows in it. A learning rate this large makes
    # the held-out loss rise and fall, so the best evaluation is not the last one.
    result = run(tmp_path, tiny_bert_dir, "train.epochs=4", "train.learning_rate=0.05", "train.precision=fp32",
                 "train.evals_per_epoch=2", f"train.keep={keep}")
    training, evaluations = result.metrics["training"], _evaluations(result)
    assert len(evaluations) >= 6 and training["optimizer_steps"] == max(evaluations)
    assert training["best_step"] != training["optimizer_steps"]  # else this run could not tell keep apart
    assert training["kept"] == keep
    kept = training["best_step"] if keep == "best" else training["optimizer_steps"]
    assert training["kept_step"] == kept
    assert result.metrics["validation"]["model"]["loss"] == pytest.approx(evaluations[kept], rel=1e-5)


def test_test_file_is_evaluated_with_baselines(tmp_path, tiny_bert_dir):
    result = run(tmp_path, tiny_bert_dir, "train.max_steps=2", f"data.test={FIXTURES / 'reviews.jsonl'}",
                 "eval.baseline_model=random_forest")
    assert result.metrics["test"]["model"]["n"] == 40
    assert set(result.metrics["test"]) == {"model", "majority", "tfidf_random_forest", "embeddings_logreg", "knn"}
    assert result.metrics["verdict"]["split"] == "test"  # the verdict is given on the test split when there is one
    only = run(tmp_path / "chosen", tiny_bert_dir, "train.max_steps=2", "eval.baselines=[knn]")
    assert set(only.metrics["validation"]) == {"model", "knn"}


def test_validation_file_replaces_the_split(tmp_path, tiny_bert_dir):
    result = run(tmp_path, tiny_bert_dir, "train.max_steps=2", f"data.validation={FIXTURES / 'reviews.tsv'}")
    assert result.metrics["validation"]["model"]["n"] == 40


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gradient_checkpointing_still_trains(tmp_path, tiny_bert_dir, method):
    import torch

    from ftune.eval.classifier import load_run_classifier
    from ftune.models.load import load_classifier

    torch.manual_seed(0)
    result = run(tmp_path, tiny_bert_dir, f"method={method}", "train.max_steps=3",
                 "train.gradient_checkpointing=true", "train.learning_rate=0.01")
    trained = load_run_classifier(result.run_dir).model
    base = load_classifier(str(tiny_bert_dir), ["negative", "positive"]).model
    base_weights = dict(base.named_parameters())
    moved = [n for n, p in trained.named_parameters()
             if "encoder" in n and "lora_" not in n and n.replace("base_model.model.", "") in base_weights
             and not torch.equal(p, base_weights[n.replace("base_model.model.", "")])]
    if method == "full":
        assert moved, "no encoder weight changed under gradient checkpointing"
    else:
        lora = [p for n, p in trained.named_parameters() if "lora_B" in n]
        assert lora and any(p.abs().sum() > 0 for p in lora), "LoRA B matrices stayed zero"


def test_small_data_trains_min_steps_unless_epochs_are_set(tmp_path, tiny_bert_dir):
    lines = []
    config = load_config(None, [f"model={tiny_bert_dir}", f"data.train={FIXTURES / 'reviews.csv'}",
                                f"run.dir={tmp_path / 'runs'}", "train.batch_size=4", "model.max_length=32",
                                "train.min_steps=40", "eval.baselines=false"])
    result = train_classifier(config, echo=lines.append)
    assert result.metrics["training"]["optimizer_steps"] == 40  # 9 steps an epoch, 3 epochs = 27 < 40
    assert any("to reach train.min_steps = 40" in str(line) for line in lines)
    # 4 held-out rows: the run says up front that only a huge difference could show
    assert any("validation split has 4 row(s): accuracies closer than about 49 points" in str(line) for line in lines)
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "eval_accuracy" in r] == [9, 18, 27, 36, 40]
    explicit = run(tmp_path / "explicit", tiny_bert_dir, "train.epochs=1", "train.min_steps=40", "eval.baselines=false")
    assert explicit.metrics["training"]["optimizer_steps"] == 9  # epochs set: exactly that many
    off = run(tmp_path / "off", tiny_bert_dir, "train.min_steps=0", "eval.baselines=false")
    assert off.metrics["training"]["optimizer_steps"] == 27  # the default 3 epochs


def test_bf16_autocast_trains_with_fp32_master_weights(tmp_path, tiny_bert_dir):
    result = run(tmp_path, tiny_bert_dir, "train.max_steps=3", "train.precision=bf16", "eval.baselines=false")
    training = result.metrics["training"]
    assert (training["precision"], training["precision_reason"]) == ("bf16", "set by train.precision")
    assert training["optimizer_steps"] == 3


def test_the_autocast_wrapper_is_dropped_after_training():
    """accelerate wraps a bf16 model's forward in autocast; after training it must go, so the
    held-out figures are measured in fp32 as ``ftune eval`` measures them."""
    import torch
    from accelerate import Accelerator

    from ftune.training.loop import _drop_autocast_wrapper

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16))
    inputs = torch.randn(4, 16)
    reference = model(inputs)
    Accelerator(mixed_precision="bf16", cpu=True).prepare_model(model)
    assert not torch.equal(model(inputs), reference)  # bf16 matmul: the wrapper is in place
    _drop_autocast_wrapper(model)
    assert torch.equal(model(inputs), reference) and "_original_forward" not in model.__dict__


def test_the_small_split_notice_scales_with_the_rows():
    from ftune.recipes.classify import small_split_notice

    assert "about 15 points" in small_split_notice(40, "validation split")  # the default job's split
    assert "about 69 points" in small_split_notice(2, "validation split")  # a 10-row file
    assert small_split_notice(100, "validation split") is None
