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

from ftune.train.run_dir import RunDir

ROW_FIELDS = (
    "method", "kind", "status", "note", "seeds", "trainable_params", "trainable_share",
    "peak_memory_mb", "wall_time_s", "train_steps", "tokens_per_s", "ship_size_mb",
    "accuracy", "accuracy_std", "f1", "f1_std", "perplexity", "perplexity_std",
)
TASK_METRICS = {"classification": ("accuracy", "f1"), "sft": ("perplexity",)}
METRIC_TITLES = {"accuracy": "accuracy", "f1": "macro-F1", "perplexity": "perplexity"}
RESULT_FILES = {"csv": "results.csv", "json": "results.json", "md": "results.md", "html": "report.html"}
MISSING = "—"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DATA_URI = "data:image/png;base64,"
FIGURE_SIZE, FIGURE_DPI = (8.0, 4.5), 110


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

def _number(value: Any) -> float | None:
    """A finite float, or None for anything missing, NaN or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def human_count(n: float) -> str:
    """1840000 -> '1.84M', 12345 -> '12.3K', 512 -> '512'."""
    for suffix in ("", "K", "M", "B"):
        if abs(n) < 999.5 or suffix == "B":
            return f"{n:.0f}" if not suffix else f"{n:.3g}{suffix}"
        n /= 1000
    raise AssertionError("unreachable")


def _share(v: float) -> str:
    return f"{v:.2%}" if v >= 0.001 or v == 0 else f"{v * 100:.2g}%"


def _megabytes(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}" if v >= 0.01 else "<0.01"


RESOURCE_COLUMNS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("trainable_params", "trainable params", human_count),
    ("trainable_share", "share", _share),
    ("peak_memory_mb", "peak memory (MB)", lambda v: f"{v:,.0f}"),
    ("wall_time_s", "wall time (s)", lambda v: f"{v:,.1f}"),
    ("tokens_per_s", "tokens/s", lambda v: f"{v:,.0f}"),
    ("ship_size_mb", "ship size (MB)", _megabytes),
)


def _metrics_shown(rows: list[dict], meta: dict) -> list[str]:
    """The task's metrics, plus any other known metric some row carries."""
    wanted = set(TASK_METRICS.get(meta.get("task", ""), ())) | {m for m in METRIC_TITLES for r in rows if m in r}
    return [m for m in METRIC_TITLES if m in wanted]


def _metric_cell(row: dict, metric: str, seeds: Any) -> str:
    value, std = _number(row.get(metric)), _number(row.get(f"{metric}_std"))
    if value is None:
        return MISSING
    digits = 2 if metric == "perplexity" else 4
    seeds = len(seeds) if isinstance(seeds, (list, tuple)) else seeds
    if std is not None and isinstance(seeds, int) and seeds > 1:
        return f"{value:.{digits}f} ± {std:.{digits}f}"
    return f"{value:.{digits}f}"


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
            value = _number(row.get(key))
            cells.append(MISSING if baseline or value is None else fmt(value))
        seeds = row.get("seeds", meta.get("seeds"))
        body.append(cells + [_metric_cell(row, m, seeds) for m in metrics])
    return header, body


def _meta_lines(meta: dict) -> list[tuple[str, str]]:
    date = " → ".join(str(meta[k]) for k in ("started", "finished") if meta.get(k))
    items = [("model", meta.get("model")), ("data", meta.get("data")), ("task", meta.get("task")),
             ("budget", meta.get("budget")), ("seeds", meta.get("seeds")), ("date", date),
             ("device", meta.get("device")), ("command", meta.get("command"))]
    return [(k, str(v)) for k, v in items if v not in (None, "")]


def _footnote(rows: list[dict], meta: dict) -> str:
    notes = ["Metrics are mean ± standard deviation over seeds where more than one seed ran."]
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
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---", "---", *["---:"] * (len(header) - 2)]) + "|")
    lines += ["| " + " | ".join(cell(c) for c in cells) + " |" for cells in body]
    return "\n".join([*lines, "", _footnote(rows, meta), ""])


# ---------------------------------------------------------------- the page

_CSS = """
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
             f"<style>{_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>", '<dl class="meta">']
    parts += [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in _meta_lines(meta)]
    parts += ["</dl>", "<h2>Results</h2>", "<table><thead><tr>",
              *(f"<th>{esc(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row, cells in zip(rows, body):
        status = str(row.get("status") or "")
        css = "baseline" if row.get("kind") == "baseline" else {
            "failed": "failed", "interrupted": "interrupted", "not applicable": "na"}.get(status, "")
        parts.append(f'<tr class="{css}">' + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    parts += ["</tbody></table>", f'<p class="foot">{esc(_footnote(rows, meta))}</p>', "<h2>Plots</h2>"]
    for caption, png, note in _plots(rows, curves, meta):
        if png is None:
            parts.append(f'<p class="plot-note">{esc(caption)}: {esc(note)}</p>')
        else:
            uri = PNG_DATA_URI + base64.b64encode(png).decode("ascii")
            parts.append(f'<figure><img src="{uri}" alt="{esc(caption)}"></figure>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


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


# ---------------------------------------------------------------- plots

def _ok(rows: list[dict], kind: str) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok" and r.get("kind", "technique") == kind]


def _plots(rows: list[dict], curves: dict[str, list[dict]], meta: dict) -> list[tuple[str, bytes | None, str]]:
    """(caption, PNG bytes or None, note shown instead of a missing plot) for each plot."""
    metric = "perplexity" if meta.get("task") == "sft" else "accuracy"
    captions = [f"{METRIC_TITLES[metric]} vs trainable parameters", "peak memory", "throughput",
                "wall time", "training loss"]
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    except ImportError:
        return [(c, None, "matplotlib is not installed (pip install matplotlib)") for c in captions]

    methods = list(dict.fromkeys([*(r.get("method") for r in rows if r.get("kind") != "baseline"), *curves]))
    if len(methods) <= 10:
        colors = {m: colormaps["tab10"](i) for i, m in enumerate(methods)}
    else:  # tab20 comes in dark / light pairs: all the dark ones first, so neighbours differ most
        order = [*range(0, 20, 2), *range(1, 20, 2)]
        colors = {m: colormaps["tab20"](order[i % 20]) for i, m in enumerate(methods)}

    def new_figure():
        fig = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
        FigureCanvasAgg(fig)  # the Agg renderer measures text when labels are placed
        return fig, fig.add_subplot()

    draws = [
        lambda: _plot_metric_vs_params(new_figure, rows, metric, colors),
        lambda: _plot_bars(new_figure, rows, "peak_memory_mb", "Peak memory per technique", "peak memory (MB)",
                           lambda v: f"{v:,.0f} MB", colors),
        lambda: _plot_bars(new_figure, rows, "tokens_per_s", "Training throughput per technique",
                           "real (non-padding) tokens per second", lambda v: f"{v:,.0f}", colors),
        lambda: _plot_bars(new_figure, rows, "wall_time_s", "Wall time per technique", "wall time (s)",
                           lambda v: f"{v:,.1f} s", colors),
        lambda: _plot_loss_curves(new_figure, rows, curves, colors),
    ]
    notes = [f"no technique finished with a {METRIC_TITLES[metric]} and a parameter count",
             "no technique reported its peak memory", "no technique reported its throughput",
             "no technique reported its wall time", "no finished technique logged a training loss"]
    plots = []
    for caption, draw, note in zip(captions, draws, notes):
        try:  # a plot is a convenience: it must never cost the report of a long comparison
            fig = draw()
            plots.append((caption, _png(fig) if fig else None, note))
        except Exception as error:
            plots.append((caption, None, f"could not be drawn ({type(error).__name__}: {error})"))
    return plots


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _plot_metric_vs_params(new_figure, rows, metric, colors):
    points = [(str(r.get("method")), p, v, _number(r.get(f"{metric}_std"))) for r in _ok(rows, "technique")
              if (p := _number(r.get("trainable_params"))) and p > 0 and (v := _number(r.get(metric))) is not None]
    if not points:
        return None
    fig, ax = new_figure()
    for method, params, value, std in points:
        ax.errorbar(params, value, yerr=std if std else None, fmt="o", markersize=7, capsize=4,
                    color=colors.get(method), markeredgecolor="white", markeredgewidth=0.8, alpha=0.85, zorder=3)
    styles = ["--", ":", "-."]
    for i, row in enumerate(r for r in _ok(rows, "baseline") if _number(r.get(metric)) is not None):
        value = _number(row[metric])
        ax.axhline(value, linestyle=styles[i % 3], color="0.45", linewidth=1.2, zorder=1,
                   label=f"baseline {row.get('method')}: {value:.4g}")
    ax.set_xscale("log")
    values = [v for _, _, v, _ in points]
    if metric == "perplexity" and max(values) / max(min(values), 1e-9) > 20:
        ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: human_count(x)))
    ax.margins(x=0.12, y=0.15)
    better = "lower is better" if metric == "perplexity" else "higher is better"
    ax.set_title(f"{METRIC_TITLES[metric].capitalize()} vs trainable parameters")
    ax.set_xlabel("trainable parameters (count, log scale)")
    ax.set_ylabel(f"{METRIC_TITLES[metric]} ({better})")
    ax.grid(alpha=0.3, which="major")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9, loc="best", framealpha=0.9)
    fig.tight_layout()
    _label_points(fig, ax, [(m, p, v) for m, p, v, _ in points], colors)
    return fig


def _label_points(fig, ax, points: list[tuple[str, float, float]], colors: dict) -> None:
    """Name each point, trying positions around it, nearest first, so labels overlap neither each
    other, the points, the legend nor the axes' edge; a thin line in its colour leads back to the point."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    ax.autoscale_view()
    taken = [_box(px - 6, py - 6, px + 6, py + 6) for px, py in (ax.transData.transform((x, y)) for _, x, y in points)]
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    inside = ax.get_window_extent(renderer)
    offsets = [(dx * far, dy * far) for far in (1, 2.4, 3.8)
               for dx, dy in ((7, 5), (7, -5), (-7, 5), (-7, -5), (0, 9), (0, -9))]
    for text, x, y in sorted(points, key=lambda p: (p[1], p[2])):
        color = _darker(colors.get(text, (0.3, 0.3, 0.3)))  # the point's colour says which label is whose
        tries = [*offsets, offsets[0]]  # when every place is taken: the nearest, overlapping
        for n, (dx, dy) in enumerate(tries, start=1):
            label = ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=9.5, color=color,
                ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom" if dy > 0 else "top",
                arrowprops=dict(arrowstyle="-", color=color, linewidth=0.8, shrinkA=1, shrinkB=4))
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer)  # the words only, not the leader line
            fits = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            if n == len(tries) or (fits and not any(box.overlaps(other) for other in taken)):
                break
            label.remove()
        taken.append(box)


def _darker(color, by: float = 0.35) -> tuple[float, float, float]:
    return tuple(c * (1 - by) for c in color[:3])


def _box(x0, y0, x1, y1):
    from matplotlib.transforms import Bbox

    return Bbox.from_extents(x0, y0, x1, y1)


def _plot_bars(new_figure, rows, key, title, xlabel, fmt, colors):
    data = sorted(((str(r.get("method")), v) for r in _ok(rows, "technique") if (v := _number(r.get(key))) is not None),
                  key=lambda item: item[1])  # ascending, so the largest bar is drawn on top
    if not data:
        return None
    fig, ax = new_figure()
    names, values = zip(*data)
    bars = ax.barh(range(len(names)), values, color=[colors.get(n) for n in names], height=0.7)
    ax.bar_label(bars, labels=[fmt(v) for v in values], padding=4, fontsize=9)
    ax.set_yticks(range(len(names)), names, fontsize=10)
    ax.set_xlim(0, max(max(values), 1e-9) * 1.18)  # room for the value labels
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def _plot_loss_curves(new_figure, rows, curves, colors):
    status = {r.get("method"): r.get("status") for r in rows}
    lines = []
    for method, points in curves.items():
        if status.get(method, "ok") != "ok":
            continue
        xy = [(s, loss) for p in points or []
              if (s := _number(p.get("step"))) is not None and (loss := _number(p.get("loss"))) is not None]
        if xy:
            lines.append((method, xy))
    if not lines:
        return None
    fig, ax = new_figure()
    smoothed = any(len(xy) > 20 for _, xy in lines)
    for method, xy in lines:
        xs, ys = zip(*xy)
        color = colors.get(method)
        if len(xs) > 20:  # per-step losses are noisy: the logged values faint, a moving average on top
            ax.plot(xs, ys, color=color, linewidth=0.8, alpha=0.25)
            ys = _moving_average(ys, window=max(3, len(ys) // 15))
        ax.plot(xs, ys, label=method, color=color, linewidth=1.8, marker="o" if len(xs) == 1 else None)
    ax.set_title("Training loss (first seed)" + ("; lines: moving average, faint: logged values" if smoothed else ""))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if len(lines) > 5:  # beside the plot, so it never hides a curve
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def _moving_average(values, window: int) -> list[float]:
    """Trailing mean over ``window`` points (fewer at the start), so a line starts where its data does."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out
