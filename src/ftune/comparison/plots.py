"""The plots of a comparison report, drawn with matplotlib (no pyplot, no global state)."""

from __future__ import annotations

import io

from ftune.comparison.columns import LOWER_IS_BETTER, METRIC_TITLES, TASK_METRICS, finite_number, human_count

FIGURE_SIZE, FIGURE_DPI = (8.0, 4.5), 110


def _ok(rows: list[dict], kind: str) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok" and r.get("kind", "technique") == kind]


def draw_plots(rows: list[dict], curves: dict[str, list[dict]], meta: dict) -> list[tuple[str, bytes | None, str]]:
    """(caption, PNG bytes or None, note shown instead of a missing plot) for each plot."""
    metric = TASK_METRICS.get(meta.get("task", ""), TASK_METRICS["classification"])[0]
    captions = [f"{METRIC_TITLES[metric]} vs trainable parameters", "peak memory", "throughput",
                "wall time", "training loss"]
    try:
        from matplotlib import colormaps
    except ImportError:
        return [(c, None, "matplotlib is not installed (pip install matplotlib)") for c in captions]

    methods = list(dict.fromkeys([*(r.get("method") for r in rows if r.get("kind") != "baseline"), *curves]))
    if len(methods) <= 10:
        colors = {m: colormaps["tab10"](i) for i, m in enumerate(methods)}
    else:  # tab20 comes in dark / light pairs: all the dark ones first, so neighbours differ most
        order = [*range(0, 20, 2), *range(1, 20, 2)]
        colors = {m: colormaps["tab20"](order[i % 20]) for i, m in enumerate(methods)}

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
    return drawn_plots(captions, draws, notes)


def drawn_plots(captions, draws, notes) -> list[tuple[str, bytes | None, str]]:
    """(caption, PNG bytes or None, note shown instead) for each ``draw()``; a draw that returns
    None shows its note, one that fails shows why."""
    plots = []
    for caption, draw, note in zip(captions, draws, notes):
        try:  # a plot is a convenience: it must never cost the results of a long comparison or search
            fig = draw()
            plots.append((caption, figure_png(fig) if fig else None, note))
        except Exception as error:
            plots.append((caption, None, f"could not be drawn ({type(error).__name__}: {error})"))
    return plots


def new_figure():
    """A figure of the report's size with one axes, drawn by Agg: (figure, axes). No pyplot:
    no global state, no GUI backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)  # the Agg renderer measures text when labels are placed
    return fig, fig.add_subplot()


def figure_png(fig) -> bytes:
    """The figure as PNG bytes, without a timestamp or software tag (the same plot, the same bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _plot_metric_vs_params(new_figure, rows, metric, colors):
    points = [(str(r.get("method")), p, v, finite_number(r.get(f"{metric}_std"))) for r in _ok(rows, "technique")
              if (p := finite_number(r.get("trainable_params"))) and p > 0 and (v := finite_number(r.get(metric))) is not None]
    if not points:
        return None
    fig, ax = new_figure()
    for method, params, value, std in points:
        ax.errorbar(params, value, yerr=std if std else None, fmt="o", markersize=7, capsize=4,
                    color=colors.get(method), markeredgecolor="white", markeredgewidth=0.8, alpha=0.85, zorder=3)
    styles = ["--", ":", "-."]
    for i, row in enumerate(r for r in _ok(rows, "baseline") if finite_number(r.get(metric)) is not None):
        value = finite_number(row[metric])
        ax.axhline(value, linestyle=styles[i % 3], color="0.45", linewidth=1.2, zorder=1,
                   label=f"baseline {row.get('method')}: {value:.4g}")
    ax.set_xscale("log")
    values = [v for _, _, v, _ in points]
    if metric == "perplexity" and max(values) / max(min(values), 1e-9) > 20:
        ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: human_count(x)))
    ax.margins(x=0.12, y=0.15)
    better = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
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
    data = sorted(((str(r.get("method")), v) for r in _ok(rows, "technique") if (v := finite_number(r.get(key))) is not None),
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
              if (s := finite_number(p.get("step"))) is not None and (loss := finite_number(p.get("loss"))) is not None]
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
