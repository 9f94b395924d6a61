"""What ``ftune tune`` leaves behind: trials.csv (one row per trial), best.yaml (the best config,
ready for ``ftune train``), report.html (the table, the optimisation history and the parameter
importances, plots inlined as PNG), and the lines it prints."""

from __future__ import annotations

import csv
import html
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftune.comparison.columns import finite_number
from ftune.runs.run_dir import RunDir
from ftune.tuning.space import short_key, short_value, with_values

FILES = {"best": "best.yaml", "csv": "trials.csv", "html": "report.html"}
TRIALS_DIR = "trials"  # each trial's run directory: <search directory>/trials/<timestamp>-trial-NNN
STATE_NAMES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "waiting"}


@dataclass
class TuneResult:
    """A search as it stands: its directory and files, one row per trial, the best and the
    default config's trial (rows of ``rows``), and how many trials finished of how many asked."""

    directory: Path
    files: dict[str, Path]  # best.yaml (once a trial completed), trials.csv, report.html
    rows: list[dict[str, Any]]
    metric: str
    maximize: bool
    finished: int
    trials: int
    best: dict[str, Any] | None = None
    default: dict[str, Any] | None = None
    interrupted: bool = False
    keys: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The trials table, the best against the default config, and the files."""
        lines = [trials_table(self.rows, self.keys, self.metric), "", best_against_default(self)]
        labels = {"best": "best config (ftune train it)", "csv": "trials table", "html": "report"}
        lines += [f"{labels.get(kind, kind)}: {path}" for kind, path in self.files.items()]
        return "\n".join(lines)


# ---------------------------------------------------------------- rows

def trial_rows(study, directory: Path) -> list[dict[str, Any]]:
    """One dict per trial of the study, in trial order."""
    trials = study.get_trials(deepcopy=False)
    rerun_as = {t.user_attrs["retry_of"]: t.number for t in trials if t.user_attrs.get("retry_of") is not None}
    rows = []
    for t in trials:
        state = STATE_NAMES.get(t.state.name, t.state.name.lower())
        notes = [trial_note(t.user_attrs)]
        if t.user_attrs.get("pruned_at_step") is not None:
            notes.append(f"pruned at step {t.user_attrs['pruned_at_step']}")
        interrupted = state == "failed" and (t.user_attrs.get("interrupted") or t.number in rerun_as)
        if state == "failed":
            notes.append("interrupted" + (f"; re-run as #{rerun_as[t.number]}" if t.number in rerun_as else "")
                         if interrupted else t.user_attrs.get("error", ""))
        value = t.value if state in ("complete", "pruned") else None
        rows.append({"number": t.number, "state": state, "value": finite_number(value), "params": dict(t.params),
                     # an interrupted trial "ends" when a later process marks it failed: no duration
                     "duration_s": round(t.duration.total_seconds(), 1) if t.duration and not interrupted else None,
                     "run_dir": t.user_attrs.get("run_dir") or _trial_dir(directory, t.number),
                     "note": "; ".join(n for n in notes if n), "default": bool(t.user_attrs.get("default")),
                     "intermediate": dict(sorted(t.intermediate_values.items()))})
    return rows


def _trial_dir(directory: Path, number: int) -> str:
    """The run directory of a trial that did not finish (killed or failed), if it was created."""
    found = sorted(Path(directory, TRIALS_DIR).glob(f"*-trial-{number:03d}"))
    return str(found[-1]) if found else ""


def trial_note(attrs: dict[str, Any]) -> str:
    """``default config`` / ``re-run of #3`` from a trial's user attributes."""
    notes = ["default config"] if attrs.get("default") else []
    if attrs.get("retry_of") is not None:
        notes.append(f"re-run of #{attrs['retry_of']}")
    return "; ".join(notes)


def best_row(rows: list[dict], maximize: bool) -> dict | None:
    """The complete trial with the best value (the earliest of equals)."""
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not complete:
        return None
    sign = 1 if maximize else -1
    return max(complete, key=lambda r: (sign * r["value"], -r["number"]))


def default_row(rows: list[dict]) -> dict | None:
    """The default config's finished trial (complete before pruned)."""
    candidates = [r for r in rows if r["default"] and r["state"] in ("complete", "pruned")]
    return sorted(candidates, key=lambda r: (r["state"] != "complete", r["number"]))[0] if candidates else None


# ---------------------------------------------------------------- text

def params_text(params: dict[str, Any]) -> str:
    keys = list(params)
    return " ".join(f"{short_key(k, keys)}={short_value(v)}" for k, v in params.items())


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def progress_line(study, trial, objective, durations: list[float]) -> str:
    """``ftune tune: trial 3/12 (#2) lr=... r=8: accuracy 0.8750 in 41 s; best 0.8900 (#1); about 6 min left``."""
    plan, metric = objective.plan, objective.plan.metric
    took = _seconds(trial.duration.total_seconds() if trial.duration else None)
    if trial.state.name == "FAIL":
        return (f"ftune tune: trial #{trial.number} failed after {took}: {trial.user_attrs.get('error', 'see above')} "
                "(failed trials do not count)")
    head = f"ftune tune: trial {objective.position}/{objective.trials} (#{trial.number}) {params_text(trial.params)}"
    if trial.state.name == "PRUNED":
        result = f"pruned at step {trial.user_attrs.get('pruned_at_step', '?')}"
        if finite_number(trial.value) is not None:
            result += f" ({metric} {trial.value:.4f} there)"
    else:
        result = f"{metric} {trial.value:.4f}"
    rows = trial_rows(study, objective.directory)
    best = best_row(rows, plan.maximize)
    tail = f"; best {best['value']:.4f} (#{best['number']})" if best else ""
    left = objective.trials - sum(r["state"] in ("complete", "pruned", "running") for r in rows)
    if left > 0 and durations:
        tail += f"; about {_seconds(sum(durations) / len(durations) * left)} left"
    return f"{head}: {result} in {took}{tail}"


def trials_table(rows: list[dict], keys: list[str], metric: str) -> str:
    """The trials as an aligned text table (number, state, value, parameters, time, run, note)."""
    header = ["#", "state", metric, *(short_key(k, keys) for k in keys), "time", "run directory", "note"]
    body = []
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        cells = [str(r["number"]), r["state"], value, *(short_value(r["params"][k]) if k in r["params"] else ""
                                                        for k in keys),
                 _seconds(r["duration_s"]) if r["duration_s"] is not None else "", _shown_path(r["run_dir"]), r["note"]]
        body.append(cells)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    numeric = {0, 2, *range(3, 3 + len(keys)), 3 + len(keys)}
    lines = []
    for row in [header, *body]:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _shown_path(path: str) -> str:
    if not path:
        return ""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:  # another drive (Windows)
        return path


def best_against_default(result) -> str:
    """One sentence: the best trial's value against the default config's, both measured."""
    best = result.best
    if best is None:
        return "no trial has completed yet, so there is no best config"
    return f"best: trial #{best['number']}, validation {result.metric} {best['value']:.4f}; {against_default(result)}"


def against_default(result) -> str:
    """How the best trial compares with the default config's trial (trial 0)."""
    best, default, metric = result.best, result.default, result.metric
    if default is None:
        return "the default config was not measured, so there is nothing to compare it with"
    if default["number"] == best["number"] or (default["state"] == "complete" and default["value"] == best["value"]):
        return f"the default config (trial #{default['number']}) did as well; no trial beat it"
    if default["state"] == "pruned":
        return (f"the default config (trial #{default['number']}) was pruned"
                + (f" at {metric} {default['value']:.4f}" if default["value"] is not None else ""))
    gain = best["value"] - default["value"]
    said = f"the default config (trial #{default['number']}) reached {default['value']:.4f}: {gain:+.4f}"
    if metric == "accuracy" and default["state"] == "complete":
        from ftune.tuning.significance import paired_accuracy_note

        note = paired_accuracy_note(best["run_dir"], default["run_dir"])
        said += f" ({note})" if note else ""
    return said


# ---------------------------------------------------------------- files

def write_tune_results(study, plan, directory: Path, trials: int, command: str = "", *, interrupted: bool = False,
                       html: bool = True) -> TuneResult:
    """Write trials.csv and best.yaml (and report.html unless ``html=False``) atomically into
    ``directory``; return the search as a ``TuneResult``."""
    directory = Path(directory)
    rows = trial_rows(study, directory)
    keys = list(dict.fromkeys([*plan.space, *(k for r in rows for k in r["params"])]))
    result = TuneResult(directory, {}, rows, plan.metric, plan.maximize,
                        sum(r["state"] in ("complete", "pruned") for r in rows), trials,
                        best_row(rows, plan.maximize), default_row(rows), interrupted, keys)
    out = RunDir(directory)
    if result.best is not None:
        result.files["best"] = out.write_text(FILES["best"], best_config_yaml(plan, result))
    result.files["csv"] = out.write_text(FILES["csv"], trials_csv(rows, keys))
    if html:
        importances, note = param_importances(study, plan.config.train.seed)
        result.files["html"] = out.write_text(FILES["html"], report_html(result, plan, command, importances, note))
    return result


def trials_csv(rows: list[dict], keys: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", "value", *keys, "duration_s", "run_dir", "note"])
    for r in rows:
        writer.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"],
                         *(r["params"].get(k, "") for k in keys),
                         "" if r["duration_s"] is None else r["duration_s"], r["run_dir"], r["note"]])
    return buffer.getvalue()


def best_config_yaml(plan, result) -> str:
    """The shared config with the best trial's parameters, every key documented; ``run.dir`` and
    ``run.name`` stay the config's, so ``ftune train best.yaml`` starts a run of its own."""
    from ftune.settings import render_config

    best = result.best
    config = with_values(plan.config, best["params"])
    header = [f"# ftune tune: the best of {result.finished} finished trials: trial #{best['number']}, "
              f"validation {plan.metric} {best['value']:.4f}; {against_default(result)}",
              f"# searched: {', '.join(best['params'])}. Train it: ftune train {Path(result.directory) / FILES['best']}"]
    return "\n".join(header) + "\n" + render_config(config)


def param_importances(study, seed: int = 0) -> tuple[dict[str, float] | None, str]:
    """Optuna's parameter importances over the complete trials (fANOVA, seeded: random forests
    that work from a handful of trials, where PED-ANOVA's quantiles need dozens), or why there
    are none."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return None, (f"parameter importances need at least 2 complete trials; this study has {len(complete)} "
                      "(pruned trials do not count: they stopped before their final value)")
    if len({t.value for t in complete}) == 1:
        return None, (f"every complete trial reached the same value ({complete[0].value:.4f}), so no parameter can "
                      "be credited with a difference")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator)), ""
    except Exception as error:  # a parameter with one value only, ...
        return None, f"parameter importances could not be computed ({type(error).__name__}: {error})"


def report_html(result, plan, command: str, importances: dict[str, float] | None, importance_note: str) -> str:
    """One self-contained page: the search's settings, the result, the trials table and the plots."""
    from ftune.comparison.report import PAGE_CSS, figure_html
    from ftune.tuning.plots import draw_tuning_plots
    from ftune.tuning.space import space_summary

    esc = html.escape
    c = plan.config
    title = f"ftune tune: {Path(c.model.name).name} + {c.method.name} on {Path(c.data.train or 'demo data').name}"
    meta = [("model", c.model.name), ("technique", c.method.name), ("data", c.data.train or "built-in demo data"),
            ("objective", f"{'maximize' if plan.maximize else 'minimize'} validation {plan.metric} ({plan.objective})"),
            ("trials", f"{result.finished} of {result.trials} finished" + (" (interrupted)" if result.interrupted else "")),
            ("search space", space_summary(plan.space)), ("sampler", f"TPE, seed {c.train.seed}"),
            ("study", f"{plan.study_name!r} in {plan.storage_url(result.directory)}"),
            ("written", time.strftime("%Y-%m-%d %H:%M:%S")), ("command", command)]
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>",
             f"<style>{PAGE_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>", '<dl class="meta">',
             *(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in meta if v), "</dl>",
             "<h2>Result</h2>", f"<p>{esc(best_against_default(result))}.</p>"]
    if "best" in result.files:
        parts.append(f"<p>The best config: <code>{esc(str(result.files['best']))}</code> "
                     f"(<code>ftune train {esc(str(result.files['best']))}</code>).</p>")
    keys = result.keys
    header = ["#", "state", plan.metric, *(short_key(k, keys) for k in keys), "time (s)", "run directory", "note"]
    parts += ["<h2>Trials</h2>", "<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in header),
              "</tr></thead><tbody>"]
    best_number = result.best["number"] if result.best else None
    for r in result.rows:
        cells = [str(r["number"]), r["state"], "" if r["value"] is None else f"{r['value']:.4f}",
                 *(short_value(r["params"][k]) if k in r["params"] else "" for k in keys),
                 "" if r["duration_s"] is None else f"{r['duration_s']:.1f}", r["run_dir"], r["note"]]
        css = "best" if r["number"] == best_number else "failed" if r["state"] == "failed" else ""
        parts.append(f'<tr class="{css}">' + "".join(f"<td>{esc(x)}</td>" for x in cells) + "</tr>")
    parts += ["</tbody></table>", "<h2>Plots</h2>"]
    parts += [figure_html(caption, png, note) for caption, png, note in
              draw_tuning_plots(result.rows, plan.metric, plan.maximize, importances, importance_note, keys)]
    parts.append("</body></html>\n")
    return "\n".join(parts).replace("</style>", "tr.best td { background: #eef7ee; font-weight: 600; }\n</style>", 1)
