"""The structure the code promises: one-way layers, registries that find new modules, and a
library API the command line only prints."""

from __future__ import annotations

import runpy
from pathlib import Path

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[2]


def test_imports_point_one_way_with_no_cycles_and_no_private_names(capsys):
    check = runpy.run_path(str(ROOT / "scripts" / "import_graph.py"))["check"]
    assert check() == 0, capsys.readouterr().out


def test_nothing_below_the_cli_imports_it_and_every_module_is_in_a_layer():
    graph = runpy.run_path(str(ROOT / "scripts" / "import_graph.py"))
    source = ROOT / "src" / "ftune"
    for path in source.rglob("*.py"):
        module = graph["module_name"](path)
        if graph["layer_of"](module) in ("cli", "__main__"):  # `python -m ftune` runs the command line
            continue
        targets = [t for t, _, _ in graph["imports_of"](path, module)]
        assert not [t for t in targets if t.startswith("ftune.cli")], module
        assert module == "ftune" or graph["layer_of"](module) in graph["LAYERS"], module


def test_compare_all_is_every_registered_technique():
    from ftune.comparison.plan import parse_methods
    from ftune.methods import method_names

    assert parse_methods("all") == method_names()
    assert {"rslora", "loha", "dora", "qlora"} <= set(parse_methods("all"))


def test_the_python_api_trains_evaluates_and_predicts(tmp_path, tiny_bert_dir):
    """``ftune.train`` takes a dict as the YAML reads; ``ftune.evaluate`` on the saved run
    reproduces the figures measured on the in-memory model before it was saved."""
    import ftune

    rows = (FIXTURES / "reviews.csv").read_text().splitlines()
    held_out = tmp_path / "held_out.csv"
    held_out.write_text("\n".join(rows[:1] + rows[-12:]) + "\n")
    lines: list[str] = []
    run = ftune.train({"model": {"name": str(tiny_bert_dir), "max_length": 32},
                       "data": {"train": str(FIXTURES / "reviews.csv"), "validation": str(held_out)},
                       "train": {"epochs": 2, "batch_size": 8}, "run": {"dir": str(tmp_path / "runs")}},
                      echo=lines.append)
    assert isinstance(run, ftune.TrainedRun) and run.objective == "classification"
    # the defaults the objective settled are written down in the run's config
    from ftune.methods import get_method_class
    from ftune.settings import load_config

    recorded = load_config(run.run_dir / "config.yaml", check=False)
    assert recorded.train.learning_rate == get_method_class("lora").default_learning_rates["classification"]
    assert recorded.model.max_length == 32
    assert any("training rows" in line for line in lines)  # progress went to echo, not stdout
    measured = run.metrics["validation"]["model"]
    again = ftune.evaluate(run.run_dir, held_out)
    assert again["n"] == measured["n"] == 12
    assert again["accuracy"] == measured["accuracy"] and abs(again["loss"] - measured["loss"]) < 1e-5
    predicted = list(ftune.predict(run.run_dir, ["a warm and funny film"]))
    (text, ranked), = predicted
    assert text == "a warm and funny film" and {label for label, _ in ranked} == {"negative", "positive"}
    assert abs(sum(p for _, p in ranked) - 1) < 1e-5


def _readme_table(heading: str) -> list[str]:
    """The backticked names in the first column of the table under ``heading``."""
    import re

    text = (ROOT / "README.md").read_text()
    table = []
    for line in text[text.index(heading):].splitlines():
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    assert len(table) > 2
    return [name for line in table[2:] for name in re.findall(r"`([a-z_0-9]+)`", line.split("|")[1])]


def test_readme_and_help_texts_list_what_the_registries_hold():
    from ftune.data.formats import format_names
    from ftune.methods import method_names
    from ftune.settings import load_config, render_config

    assert sorted(_readme_table("### Techniques (`method=`)")) == method_names()
    assert sorted(_readme_table("| `data.format` | rows |")) == format_names()
    rendered = render_config(load_config())
    method_line = next(line for line in rendered.splitlines() if line.strip().startswith("name: lora"))
    assert method_line.endswith("adaptation technique: " + ", ".join(method_names()))
    assert all(name in rendered for name in format_names())
