"""Config: defaults, YAML + overrides, and errors that name the key, the file and the line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ftune.settings import config_from_dict, config_to_dict, load_config, render_config
from ftune.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "my.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(*args, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(*args, **kwargs)
    return caught.value.problems


def test_defaults_are_the_documented_default_job():
    config = load_config()
    assert config.model.name == "minilm-l6"
    assert config.method.name == "lora"
    assert config.method.options == {"r": 16, "alpha": 32.0, "dropout": 0.05, "target_modules": "attention",
                                     "use_dora": False, "use_rslora": False}
    assert config.data.train is None and config.data.validation_fraction == 0.1


def test_yaml_then_overrides_with_shorthand_and_types(tmp_path):
    path = write(tmp_path, """
        model: smollm2-135m
        method:
          name: lora
          r: 4
        train:
          epochs: 5
          learning_rate: 0.002
        data:
          text_columns: [1, 2]
          label_column: 0
    """)
    config = load_config(path, ["method.r=16", "train.epochs=3", "data.text_columns=[title,body]"])
    assert config.model.name == "smollm2-135m"
    assert config.method.options["r"] == 16
    assert config.train.epochs == 3.0 and isinstance(config.train.epochs, float)
    assert config.train.learning_rate == 0.002
    assert config.data.text_columns == ["title", "body"]
    assert config.data.label_column == 0


def test_exponent_without_a_dot_is_a_number():
    assert load_config(None, ["train.learning_rate=1e-4"]).train.learning_rate == 1e-4


def test_single_text_column_becomes_a_list():
    assert load_config(None, ["data.text_columns=review"]).data.text_columns == ["review"]


def test_misspelled_key_in_yaml_names_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, """
        train:
          epochs: 2
          learning_rat: 0.1
    """)
    (problem,) = problems_of(path)
    assert problem.startswith("my.yaml:4: train.learning_rat: unknown key.")
    assert 'Did you mean "train.learning_rate"?' in problem


def test_every_problem_is_reported_together():
    problems = problems_of(None, ["train.epochz=2", "train.batch_size=big", "train.scheduler=cosin",
                                  "method.alpah=3"])
    assert len(problems) == 4
    text = "\n".join(problems)
    assert 'Did you mean "train.epochs"?' in text
    assert "train.batch_size = 'big': must be a whole number" in text
    assert "must be one of linear, cosine, constant" in text and 'Did you mean "cosine"?' in text
    assert 'Did you mean "method.alpha"?' in text


def test_names_from_other_tools_are_recognised():
    problems = problems_of(None, ["train.lr=0.1", "model.max_seq_length=64"])
    assert 'train.lr: unknown key. Did you mean "train.learning_rate"?' in problems[0]
    assert 'Did you mean "model.max_length"?' in problems[1]


def test_option_of_another_technique_says_whose_it_is():
    (problem,) = problems_of(None, ["method=lora", "method.layers=2"])
    assert "not an option of method 'lora'" in problem and "It is an option of freeze" in problem


def test_unknown_technique_lists_the_registry():
    (problem,) = problems_of(None, ["method=lorra"])
    from ftune.methods import method_names

    assert "choose one of " + ", ".join(method_names()) + "." in problem and "loha" in method_names()
    assert 'Did you mean "lora"?' in problem


@pytest.mark.parametrize("override, expected", [
    ("train.warmup_ratio=1.5", "train.warmup_ratio = 1.5: must be between 0 and 1"),
    ("data.validation_fraction=0", "must be between 0 and 1"),
    ("train.precision=fp16", None),  # fine with device=auto: decided per device
    ("data.train=/no/such/file.csv", "data.train = '/no/such/file.csv': file not found"),
    ("model=/no/such/model", "not a built-in model"),
    ("method.r=0", "method.r = 0: must be at least 1"),
    ("method.target_modules=everything", "use a preset (attention, all-linear)"),
])
def test_range_and_existence_checks(override, expected):
    if expected is None:
        load_config(None, [override])
        return
    problems = problems_of(None, [override])
    assert any(expected in p for p in problems), problems


def test_impossible_combination_fails_naming_both_keys():
    (problem,) = problems_of(None, ["train.device=cpu", "train.precision=fp16"])
    assert "train.precision" in problem and "needs a CUDA GPU" in problem
    (problem,) = problems_of(None, ["data.label_column=0", "data.text_columns=[0,1]"])
    assert "data.label_column = 0: is also one of data.text_columns" in problem


def test_override_without_equals_is_explained():
    (problem,) = problems_of(None, ["train.epochs"])
    assert "expected key=value" in problem


def test_round_trip_through_dict_and_rendered_yaml(tmp_path):
    config = load_config(None, ["method=freeze", "method.layers=3", "data.text_separator= | "])
    assert config_from_dict(config_to_dict(config)) == config
    rendered = tmp_path / "resolved.yaml"
    rendered.write_text(render_config(config))
    assert load_config(rendered) == config
    assert "# number of top transformer blocks that train" in render_config(config)


def test_config_errors_never_import_torch():
    code = ("import sys\nfrom ftune.cli.main import main\ncode = main(['train', 'method.alpah=3'])\n"
            "assert code == 2, code\nassert 'torch' not in sys.modules and 'transformers' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'Did you mean "method.alpha"?' in result.stderr


@pytest.mark.parametrize("written, steps, seconds", [("off", None, None), ("", None, None), ("200", 200, None),
                                                     ("10m", None, 600.0), ("2.5 minutes", None, 150.0)])
def test_checkpoint_every_in_steps_or_minutes(written, steps, seconds):
    from ftune.config.units import CheckpointInterval

    config = load_config(None, [f"train.checkpoint_every={written}"])  # YAML reads a bare off as false
    interval = CheckpointInterval.parse(config.train.checkpoint_every)
    assert (interval.steps, interval.seconds) == (steps, seconds)


@pytest.mark.parametrize("written", ["true", "0", "5x", "-3m"])
def test_checkpoint_every_that_is_no_interval_is_refused(written):
    with pytest.raises(ConfigError, match="train.checkpoint_every"):
        load_config(None, [f"train.checkpoint_every={written}"])
