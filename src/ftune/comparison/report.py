"""What ``ftune compare`` leaves behind: results.csv and results.json for tools, results.md for
a person, and report.html, one self-contained page with the same table and the plots.

matplotlib is imported only when the plots are drawn; without it the page says so instead.
"""

from __future__ import annotations

import base64
import binascii
import csv
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Callable

from ftune.comparison.columns import METRIC_TITLES, TASK_METRICS, finite_number, human_count
from ftune.runs.run_dir import RunDir

ROW_FIELDS = (
    "method", "kind", "status", "note", "seeds", "trainable_params", "trainable_share",
    "peak_memory_mb", "model_memory_mb", "wall_time_s", "train_steps", "tokens_per_s", "ship_size_mb",
    "accuracy", "accuracy_std", "f1", "f1_std", "perplexity", "perplexity_std",
    "preference_accuracy", "preference_accuracy_std", "reward_margin", "reward_margin_std",
    "accuracy_ci95", "perplexity_ci95", "preference_accuracy_ci95", "verdict", "mistakes",
)
RESULT_FILES = {"csv": "results.csv", "json": "results.json", "md": "results.md", "html": "report.html"}
MISSING = "—"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DATA_URI = "data:image/png;base64,"


def write_results(directory: Path, rows: list[dict], curves: dict[str, list[dict]], meta: dict) -> dict[str, Path]:
    """Write results.csv, results.json, results.md and report.html into ``directory``.

    Each file is written under a temporary name and renamed, so a reader never sees half a
    file and a second call replaces the first cleanly. Returns {"csv": path, "json": ..., ...}.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = RunDir(directory)
    writers = {"csv": lambda: results_csv(rows), "json": lambda: results_json(rows, curves, meta),
               "md": lambda: results_markdown(rows, meta), "html": lambda: report_html(rows, curves, meta)}
    # one at a time, plain data first: whatever goes wrong later, the numbers are already on disk
    return {kind: out.write_text(RESULT_FILES[kind], render()) for kind, render in writers.items()}


def results_csv(rows: list[dict]) -> str:
    """One line per row; columns ROW_FIELDS that occur, then any other keys sorted; `method` first."""
    present = {key for row in rows for key in row}
    columns = ["method", *(k for k in ROW_FIELDS if k in present and k != "method"),
               *sorted(present - set(ROW_FIELDS))]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def results_json(rows: list[dict], curves: dict[str, list[dict]], meta: dict) -> str:
    """{"meta", "rows", "curves"}; NaN and infinity become null so any JSON reader accepts it."""
    data = _finite_or_none({"meta": meta, "rows": rows, "curves": curves})
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


# ---------------------------------------------------------------- the table, as text cells

def _share(v: float) -> str:
    return f"{v:.2%}" if v >= 0.001 or v == 0 else f"{v * 100:.2g}%"


def _megabytes(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}" if v >= 0.01 else "<0.01"


RESOURCE_COLUMNS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("trainable_params", "trainable params", human_count),
    ("trainable_share", "share", _share),
    ("peak_memory_mb", "peak memory (MB)", lambda v: f"{v:,.0f}"),
    ("model_memory_mb", "model in memory (MB)", lambda v: f"{v:,.0f}"),
    ("wall_time_s", "wall time (s)", lambda v: f"{v:,.1f}"),
    ("tokens_per_s", "tokens/s", lambda v: f"{v:,.0f}"),
    ("ship_size_mb", "ship size (MB)", _megabytes),
)


def _metrics_shown(rows: list[dict], meta: dict) -> list[str]:
    """The task's metrics, plus any other known metric some row carries."""
    wanted = set(TASK_METRICS.get(meta.get("task", ""), ())) | {m for m in METRIC_TITLES for r in rows if m in r}
    return [m for m in METRIC_TITLES if m in wanted]


def _metric_cell(row: dict, metric: str, seeds: Any) -> str:
    """``0.8807 ± 0.022`` (95% interval over examples), then ``sd 0.004`` across seeds where
    more than one ran: the two spreads apart."""
    value, std = finite_number(row.get(metric)), finite_number(row.get(f"{metric}_std"))
    half = finite_number(row.get(f"{metric}_ci95"))
    if value is None:
        return MISSING
    digits = 2 if metric == "perplexity" else 4
    text = f"{value:.{digits}f}" + (f" ± {half:.3f}" if half is not None else "")
    seeds = len(seeds) if isinstance(seeds, (list, tuple)) else seeds
    if std is not None and isinstance(seeds, int) and seeds > 1:
        text += f" (sd {std:.{digits}f})"
    return text


def status_text(row: dict) -> str:
    """'ok', or the status with its note: 'failed: out of memory'."""
    status, note = str(row.get("status") or "unknown"), str(row.get("note") or "").strip()
    return f"{status}: {note}" if note else status


def table(rows: list[dict], meta: dict) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of the results table shared by results.md and report.html."""
    metrics = _metrics_shown(rows, meta)
    header = ["method", "status", *(title for _, title, _ in RESOURCE_COLUMNS), *(METRIC_TITLES[m] for m in metrics)]
    body = []
    for row in rows:
        baseline = row.get("kind") == "baseline"
        cells = [f"{row.get('method', '?')}{' (baseline)' if baseline else ''}", status_text(row)]
        for key, _, fmt in RESOURCE_COLUMNS:
            value = finite_number(row.get(key))
            cells.append(MISSING if baseline or value is None else fmt(value))
        seeds = row.get("seeds", meta.get("seeds"))
        body.append(cells + [_metric_cell(row, m, seeds) for m in metrics])
    return header, body


def _meta_lines(meta: dict) -> list[tuple[str, str]]:
    date = " → ".join(str(meta[k]) for k in ("started", "finished") if meta.get(k))
    items = [("model", meta.get("model")), ("data", meta.get("data")), ("task", meta.get("task")),
             ("budget", meta.get("budget")), ("seeds", meta.get("seeds")), ("date", date),
             ("device", meta.get("device")), ("learning rate", meta.get("learning_rate")),
             ("peak memory", meta.get("memory")), ("command", meta.get("command"))]
    return [(k, str(v)) for k, v in items if v not in (None, "")]


VERDICTS_TITLE = "Verdicts (each technique against its best baseline, paired on the first seed's held-out examples)"


def _verdicts(rows: list[dict]) -> list[tuple[str, str]]:
    """Each technique's verdict, and its most frequent mistakes where it wrote them."""
    return [(str(r["method"]), str(r["verdict"]) + (f". Most frequent mistakes: {r['mistakes']}" if r.get("mistakes")
                                                      else ""))
            for r in rows if r.get("kind") == "technique" and r.get("verdict")]


def _footnote(rows: list[dict], meta: dict) -> str:
    notes = ["Metrics are means over seeds; ± is half the width of a 95% bootstrap interval over the held-out "
             "examples (the spread the examples alone cause), and (sd …) the standard deviation across seeds, "
             "which vary the training only: every seed uses the same split (data.split_seed)."]
    if "perplexity" in _metrics_shown(rows, meta):
        notes.append("Perplexity: lower is better.")
    notes.append("Baselines train nothing, so their resource columns are empty (—).")
    return " ".join(notes)


def results_markdown(rows: list[dict], meta: dict) -> str:
    """A header with the run's settings, then the results table."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header, body = table(rows, meta)
    title = f"# ftune compare: {meta.get('model', 'model')} on {meta.get('data', 'data')}"
    lines = [title, "", *(f"- {k}: {v}" for k, v in _meta_lines(meta)), ""]
    verdicts = _verdicts(rows)
    if verdicts:
        lines += [f"## {VERDICTS_TITLE}", "", *(f"- **{method}**: {text}" for method, text in verdicts), ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---", "---", *["---:"] * (len(header) - 2)]) + "|")
    lines += ["| " + " | ".join(cell(c) for c in cells) + " |" for cells in body]
    return "\n".join([*lines, "", _footnote(rows, meta), ""])


# ---------------------------------------------------------------- the page

PAGE_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1d1d1f;
       max-width: 1240px; margin: 20px auto; padding: 0 16px; }
h1 { font-size: 24px; margin: 0 0 8px; } h2 { font-size: 18px; margin: 28px 0 8px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
       font-size: 13px; overflow-wrap: anywhere; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 7px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f3f3f5; border-bottom: 2px solid #bbb; white-space: normal; vertical-align: bottom; }
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; }
td:nth-child(1) { white-space: normal; min-width: 80px; max-width: 170px; }
td:nth-child(2) { white-space: normal; min-width: 150px; max-width: 240px; }
tr.baseline td { color: #555; font-style: italic; background: #fafafa; }
tr.failed td:nth-child(2), tr.interrupted td:nth-child(2) { color: #b00020; }
tr.na td:nth-child(2) { color: #777; }
p.foot { color: #666; font-size: 13px; }
figure { margin: 18px 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
p.plot-note { color: #777; font-style: italic; border: 1px dashed #ccc; padding: 12px; }
"""


def report_html(rows: list[dict], curves: dict[str, list[dict]], meta: dict) -> str:
    """One page with no external references: meta, the results table, PNG plots inlined as data URIs."""
    esc = html.escape
    header, body = table(rows, meta)
    title = f"ftune compare: {meta.get('model', 'model')} on {meta.get('data', 'data')}"
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>",
             f"<style>{PAGE_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>", '<dl class="meta">']
    parts += [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in _meta_lines(meta)]
    parts.append("</dl>")
    verdicts = _verdicts(rows)
    if verdicts:
        parts += [f"<h2>{esc(VERDICTS_TITLE)}</h2>", "<ul>",
                  *(f"<li><b>{esc(method)}</b>: {esc(text)}</li>" for method, text in verdicts), "</ul>"]
    parts += ["<h2>Results</h2>", "<table><thead><tr>",
              *(f"<th>{esc(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row, cells in zip(rows, body):
        status = str(row.get("status") or "")
        css = "baseline" if row.get("kind") == "baseline" else {
            "failed": "failed", "interrupted": "interrupted", "not applicable": "na"}.get(status, "")
        parts.append(f'<tr class="{css}">' + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    parts += ["</tbody></table>", f'<p class="foot">{esc(_footnote(rows, meta))}</p>', "<h2>Plots</h2>"]
    from ftune.comparison.plots import draw_plots

    parts += [figure_html(caption, png, note) for caption, png, note in draw_plots(rows, curves, meta)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def figure_html(caption: str, png: bytes | None, note: str = "") -> str:
    """A plot inlined as a PNG data URI, or, where it could not be drawn, the note saying why."""
    if png is None:
        return f'<p class="plot-note">{html.escape(caption)}: {html.escape(note)}</p>'
    uri = PNG_DATA_URI + base64.b64encode(png).decode("ascii")
    return f'<figure><img src="{uri}" alt="{html.escape(caption)}"></figure>'


def check_self_contained(page: str) -> list[str]:
    """Why ``page`` would not render offline; empty when every <img> is an inlined PNG and no
    src / href / CSS url() points anywhere but into the page itself."""
    problems = []
    for n, tag in enumerate(re.findall(r"<img\b[^>]*>", page, flags=re.IGNORECASE), start=1):
        match = re.search(r"\bsrc\s*=\s*[\"']([^\"']*)[\"']", tag, flags=re.IGNORECASE)
        src = match.group(1) if match else ""
        if not src.startswith(PNG_DATA_URI):
            problems.append(f"<img> {n}: src is not a PNG data URI: {src[:60]!r}")
            continue
        try:
            data = base64.b64decode(src[len(PNG_DATA_URI):], validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"<img> {n}: the data URI is not valid base64")
            continue
        if not data.startswith(PNG_SIGNATURE):
            problems.append(f"<img> {n}: the data URI does not decode to a PNG")
    references = re.findall(r"\b(?:src|href)\s*=\s*[\"']([^\"']*)[\"']", page, flags=re.IGNORECASE)
    references += re.findall(r"url\(\s*[\"']?([^\"')]*)", page) + re.findall(r"@import\s+[\"']([^\"']*)", page)
    problems += [f"external reference: {ref[:80]!r}" for ref in references if not ref.startswith(("data:", "#"))]
    return problems
