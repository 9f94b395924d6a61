"""The plots of a search report, drawn with matplotlib like the comparison report's (no pyplot)."""

from __future__ import annotations

from ftune.tuning.space import short_key


def draw_tuning_plots(rows: list[dict], metric: str, maximize: bool, importances: dict[str, float] | None,
                      importance_note: str, keys: list[str]) -> list[tuple[str, bytes | None, str]]:
    """(caption, PNG bytes or None, note shown instead) for the optimisation history, the values
    at each evaluation, and the parameter importances."""
    captions = ["optimisation history", f"validation {metric} at each evaluation", "parameter importances"]
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return [(c, None, "matplotlib is not installed (pip install matplotlib)") for c in captions]
    from ftune.comparison.plots import drawn_plots, new_figure

    better = "higher is better" if maximize else "lower is better"
    draws = [lambda: _history(new_figure, rows, metric, maximize, better),
             lambda: _evaluations(new_figure, rows, metric, better),
             lambda: _importances(new_figure, importances, keys) if importances else None]
    notes = ["no trial has finished yet", "no trial reported an evaluation", importance_note]
    return drawn_plots(captions, draws, notes)


def _history(new_figure, rows, metric, maximize, better):
    done = [r for r in rows if r["state"] in ("complete", "pruned") and r["value"] is not None]
    if not done:
        return None
    fig, ax = new_figure()
    complete = [r for r in done if r["state"] == "complete"]
    pruned = [r for r in done if r["state"] == "pruned"]
    if complete:
        ax.scatter([r["number"] for r in complete], [r["value"] for r in complete], color="C0", zorder=3,
                   label="complete")
    if pruned:
        ax.scatter([r["number"] for r in pruned], [r["value"] for r in pruned], color="0.55", marker="x", zorder=3,
                   label="pruned (its last evaluation)")
    best, xs, ys = None, [], []
    for r in complete:
        if best is None or (r["value"] > best if maximize else r["value"] < best):
            best = r["value"]
        xs.append(r["number"])
        ys.append(best)
    if xs:
        xs.append(max(r["number"] for r in done))
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", color="C3", linewidth=1.6, label="best so far")
    default = [r for r in done if r["default"]]
    if default:
        ax.scatter([r["number"] for r in default], [r["value"] for r in default], marker="*", s=220, color="C2",
                   edgecolor="white", zorder=4, label="default config")
    ax.set_title(f"Optimisation history: validation {metric} per trial")
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"validation {metric} ({better})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    return fig


def _evaluations(new_figure, rows, metric, better):
    curves = [r for r in rows if r["intermediate"]]
    if not curves:
        return None
    fig, ax = new_figure()
    palette = [f"C{i}" for i in range(10) if i not in (2, 7)]  # green marks the default, grey the pruned
    for i, r in enumerate(curves):
        steps, values = zip(*sorted(r["intermediate"].items()))
        if r["state"] == "pruned":
            ax.plot(steps, values, color="0.6", linestyle="--", linewidth=1, marker="x", markevery=[len(steps) - 1])
        else:
            ax.plot(steps, values, color="C2" if r["default"] else palette[i % len(palette)], linewidth=2.2 if r["default"] else 1.3,
                    marker="o", markersize=3, label=f"#{r['number']}" + (" (default)" if r["default"] else ""))
    ax.set_title(f"Validation {metric} at each evaluation (pruned trials: grey, dashed)")
    ax.set_xlabel("optimizer step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"validation {metric} ({better})")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def _importances(new_figure, importances, keys):
    data = sorted(importances.items(), key=lambda item: item[1])  # ascending: the largest bar on top
    fig, ax = new_figure()
    names = [short_key(k, keys) for k, _ in data]
    values = [v for _, v in data]
    bars = ax.barh(range(len(names)), values, color="C0", height=0.6)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=4, fontsize=9)
    ax.set_yticks(range(len(names)), names, fontsize=10)
    ax.set_xlim(0, max(max(values), 1e-9) * 1.18)
    ax.set_title("Parameter importances (Optuna fANOVA over the complete trials)")
    ax.set_xlabel("share of the variation in the validation metric")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
