"""Report figures (matplotlib, Agg). Each function returns a Figure; the CLI saves it.

Every figure has one row per strategy and one column per law (Kinetics, FLOPs-only).
Costs are eFLOPs on the x axis (log; FLOPs for the FLOPs-only law). With a hardware
preset a secondary axis gives seconds at its peak FLOP/s, labelled with what they
count: compute + memory time on a Kinetics panel (eFLOPs / peak = FLOPs / peak +
bytes / bandwidth), compute time alone on a FLOPs-only panel (its x axis holds no
bytes); a custom intensity names no peak and gets no seconds axis. Synthetic data is
marked in every panel, not only in the figure title, so a cropped panel keeps it.

Drawn for speed (a report renders figures in parallel processes): a fixed layout
instead of constrained layout, and tick labels as plain text (Unicode superscripts)
instead of mathtext.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)

from kinetics.analysis.frontier import LAWS, law_intensity, option_cost  # noqa: E402
from kinetics.analysis.labels import (  # noqa: E402
    LAW_TITLES,
    LAW_UNITS,
    METHOD_NAMES,
    STRATEGY_NAMES,
    format_intensity,
)
from kinetics.analysis.report import STRATEGIES, SUMMARY_STRATEGIES, Analysis  # noqa: E402
from kinetics.hardware import Hardware  # noqa: E402
from kinetics.models import ModelSpec  # noqa: E402

METHOD_STYLE = {"dense": ("black", "-"), "topk": ("tab:blue", "--"), "blocktopk": ("tab:red", "-.")}
SYNTHETIC_COLOR = "darkred"
SECONDS_AXIS_INCHES = 0.5  # the seconds axis' tick labels and label, above a panel
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten(value: float, _pos: object = None) -> str:
    """Tick label of a log axis without mathtext: 1e15 -> '10¹⁵', 3e15 -> '3×10¹⁵'."""
    if not value > 0:
        return ""
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10.0**exponent
    power = "10" + str(exponent).translate(_SUPERSCRIPT)
    return power if abs(mantissa - 1) < 1e-6 else f"{mantissa:.2g}×{power}"


def _log_x(axis, minor: bool = True) -> None:
    """Decade ticks labelled by :func:`power_of_ten`; unlabelled minor ticks at 2x and 5x
    (not all eight: each tick is a costly artist), or none."""
    axis.set_major_locator(LogLocator(base=10, numticks=8))
    axis.set_major_formatter(FuncFormatter(power_of_ten))
    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0), numticks=20) if minor
                           else NullLocator())
    axis.set_minor_formatter(NullFormatter())


def seconds_label(hardware: Hardware, law: str) -> str:
    """What the seconds axis of a ``law`` panel counts, at ``hardware``'s peak."""
    name, peak = hardware.name.upper(), f"{hardware.peak_flops_per_s / 1e15:.3g} PFLOP/s"
    if law == "kinetics":
        return f"{name} seconds: compute + memory time (eFLOPs / {peak})"
    return f"{name} compute seconds (FLOPs / {peak}; memory time not counted)"


def _seconds_axis(ax: plt.Axes, hardware: Hardware | None, law: str) -> None:
    """Secondary x axis: cost / the hardware's peak FLOP/s; none without a preset."""
    if hardware is None:
        return
    peak = hardware.peak_flops_per_s
    sec = ax.secondary_xaxis("top", functions=(lambda x: x / peak, lambda s: s * peak))
    _log_x(sec.xaxis, minor=False)
    sec.tick_params(labelsize=8)
    sec.set_xlabel(seconds_label(hardware, law), fontsize=8)


def _figure(rows: int, *, left: float = 0.07, right: float = 0.985, panel: float = 3.2,
            hardware: Hardware | None = None) -> tuple[Figure, np.ndarray]:
    """rows x laws panels, each ``panel`` inches tall, with a fixed layout: room above
    each panel for its title (and seconds axis), below for its x axis."""
    above = 0.35 + (SECONDS_AXIS_INCHES if hardware is not None else 0.0)  # title, seconds
    below = 0.6  # tick labels and x label
    height = 0.35 + rows * (above + panel + below)  # 0.35: the figure title
    fig, axes = plt.subplots(rows, len(LAWS), figsize=(12, height), squeeze=False)
    fig.subplots_adjust(left=left, right=right, bottom=below / height,
                        top=1 - (0.35 + above) / height, wspace=0.2,
                        hspace=(above + below) / panel)
    return fig, axes


def _title(fig: Figure, text: str, synthetic: bool) -> None:
    fig.suptitle(("SYNTHETIC data: " if synthetic else "") + text, fontsize=11,
                 color=SYNTHETIC_COLOR if synthetic else "black", y=0.995)


def _mark_synthetic(ax: plt.Axes) -> None:
    """'SYNTHETIC' inside the panel's lower right corner."""
    ax.text(0.995, 0.015, "SYNTHETIC", transform=ax.transAxes, ha="right", va="bottom",
            fontsize=9, fontweight="bold", color=SYNTHETIC_COLOR, alpha=0.55, zorder=5)


def finish_panel(ax: plt.Axes, *, law: str, xlabel: str, ylabel: str, title: str,
                 hardware: Hardware | None, synthetic: bool, legend_size: int = 7) -> None:
    """Log x axis, labels, grid, seconds axis, legend and synthetic mark of one panel."""
    ax.set_xscale("log")
    _log_x(ax.xaxis)
    ax.set_xlabel(f"{xlabel}, {LAW_UNITS[law]}")
    ax.set_ylabel(ylabel)
    # placed above the seconds axis by hand: matplotlib's automatic placement measures
    # every tick label of the figure again for each title
    panel_inches = ax.get_position().height * ax.figure.get_figheight()
    above = (SECONDS_AXIS_INCHES if hardware is not None else 0.0) + 0.04
    ax.set_title(title, fontsize=9, y=1 + above / panel_inches, va="bottom")
    ax.grid(alpha=0.3)
    _seconds_axis(ax, hardware, law)
    if legend_size:
        ax.legend(fontsize=legend_size)
    if synthetic:
        _mark_synthetic(ax)


def _panel_title(analysis: Analysis, strategy: str, law: str, note: str = "") -> str:
    intensity = format_intensity(analysis.intensity)
    return f"{STRATEGY_NAMES[strategy]}{note}: " + LAW_TITLES[law].format(I=intensity)


def _strategies(analysis: Analysis) -> list[str]:
    return [s for s in SUMMARY_STRATEGIES if s in analysis.means]


def model_colors(names: list[str]) -> dict[str, tuple]:
    """One colour per model (``names`` smallest first), qualitative so that neighbours in
    size are easy to tell apart; the same in every figure of a report."""
    shades = plt.cm.tab10(np.arange(len(names)) % 10)
    return {name: tuple(shades[i]) for i, name in enumerate(names)}


def _model_names(analysis: Analysis, models: Mapping[str, ModelSpec]) -> list[str]:
    """Every model of the analysis, smallest (active parameters) first."""
    shown = {m for o in analysis.means.values() for m in o["model"].unique()}
    return sorted(shown, key=lambda m: (models[m].active_params, m))


def accuracy_vs_cost(analysis: Analysis, models: Mapping[str, ModelSpec], *,
                     synthetic: bool, hardware: Hardware | None = None) -> Figure:
    """Per model: accuracy vs mean cost over N (Best-of-N) and budgets (long-CoT), for
    dense attention; a table without dense rows shows its first attention method and
    says so in the panel titles."""
    strategies = _strategies(analysis)
    fig, axes = _figure(len(strategies), panel=3.6, hardware=hardware)
    colors = model_colors(_model_names(analysis, models))
    for r, strategy in enumerate(strategies):
        param = STRATEGIES[strategy][1]
        table = analysis.means[strategy]
        present = [m for m in METHOD_STYLE if (table["method"] == m).any()]
        method = "dense" if "dense" in present or not present else present[0]
        shown = table[table["method"] == method]
        note = "dense" if method == "dense" else f"no dense rows, showing {METHOD_NAMES[method]}"
        for c, law in enumerate(LAWS):
            ax = axes[r, c]
            agg = per_model_means(shown, param, law_intensity(law, analysis.intensity))
            for name, color in colors.items():
                part = agg[agg["model"] == name].sort_values(param)
                if len(part):
                    ax.plot(part["cost"], part["acc"], marker=".", markersize=4, color=color,
                            label=name)
            finish_panel(ax, law=law, xlabel="cost per query",
                         ylabel="coverage (pass@N)" if strategy == "best_of_n" else "accuracy",
                         title=_panel_title(analysis, strategy, law, f", {note}"),
                         hardware=hardware, synthetic=synthetic)
    _title(fig, "accuracy vs cost per model", synthetic)
    return fig


def per_model_means(means: pd.DataFrame, param: str, intensity: float) -> pd.DataFrame:
    """Columns model, ``param``, cost (mean eFLOPs at ``intensity``), acc (mean accuracy):
    the mean over every query and config of each model's option at each ``param``, from
    :func:`kinetics.analysis.frontier.option_means` rows (weighted by their queries)."""
    weight = means["queries"].to_numpy(dtype=np.float64)
    frame = pd.DataFrame({"model": means["model"], param: means[param], "w": weight,
                          "wc": weight * option_cost(means, intensity),
                          "wa": weight * means["accuracy"].to_numpy(dtype=np.float64)})
    agg = frame.groupby(["model", param], sort=False)[["w", "wc", "wa"]].sum().reset_index()
    return pd.DataFrame({"model": agg["model"], param: agg[param], "cost": agg["wc"] / agg["w"],
                         "acc": agg["wa"] / agg["w"]})


def _method_frontiers(analysis: Analysis, law: str, strategy: str):
    """(method, colour, line style, frontier) for each attention method the analysis has
    at this law and strategy, in METHOD_STYLE order."""
    for method, (color, style) in METHOD_STYLE.items():
        frontier = analysis.frontiers.get((law, strategy, method))
        if frontier is not None:
            yield method, color, style, frontier


def pareto_dense_vs_sparse(analysis: Analysis, *, synthetic: bool,
                           hardware: Hardware | None = None) -> Figure:
    """Frontier accuracy vs budget: dense vs each sparse method, per law and strategy."""
    strategies = _strategies(analysis)
    fig, axes = _figure(len(strategies), panel=3.6, hardware=hardware)
    for r, strategy in enumerate(strategies):
        for c, law in enumerate(LAWS):
            ax = axes[r, c]
            for method, color, style, f in _method_frontiers(analysis, law, strategy):
                ax.plot(f.budgets, f.accuracy, style, color=color, label=METHOD_NAMES[method])
            ax.set_ylim(0, 1.02)
            finish_panel(ax, law=law, xlabel="budget per query", ylabel="frontier accuracy",
                         title=_panel_title(analysis, strategy, law), hardware=hardware,
                         synthetic=synthetic, legend_size=8)
    _title(fig, "Pareto frontier, dense vs sparse attention", synthetic)
    return fig


def choice_runs(budgets: np.ndarray, choice: np.ndarray) -> list[tuple[float, float, object]]:
    """Runs of one choice along a log-spaced budget grid: (left edge, right edge, choice),
    each grid point owning the span between the geometric midpoints to its neighbours
    (the first and last points extend as far as their inner half). None is a run too."""
    budgets = np.asarray(budgets, dtype=np.float64)
    if len(budgets) == 0:
        return []
    if len(budgets) == 1:
        return [(budgets[0] / 1.05, budgets[0] * 1.05, choice[0])]
    mids = np.sqrt(budgets[1:] * budgets[:-1])
    edges = np.concatenate([[budgets[0] ** 2 / mids[0]], mids, [budgets[-1] ** 2 / mids[-1]]])
    runs, start = [], 0
    for i in range(1, len(budgets) + 1):
        if i == len(budgets) or choice[i] != choice[start]:
            runs.append((float(edges[start]), float(edges[i]), choice[start]))
            start = i
    return runs


def optimal_model_size(analysis: Analysis, models: Mapping[str, ModelSpec], *,
                       synthetic: bool, hardware: Hardware | None = None) -> Figure:
    """The optimal model vs budget as one strip per attention method, the model as its
    colour (the same colours as accuracy_vs_cost, smallest to largest), blank where
    nothing fits; rows are strategies, columns laws, like the other figures."""
    strategies = _strategies(analysis)
    names = _model_names(analysis, models)
    colors = model_colors(names)
    fig, axes = _figure(len(strategies), left=0.085, right=0.845, panel=2.2, hardware=hardware)
    fig.subplots_adjust(wspace=0.27)
    for r, strategy in enumerate(strategies):
        for c, law in enumerate(LAWS):
            ax = axes[r, c]
            rows = list(_method_frontiers(analysis, law, strategy))
            for y, (_method, _color, _style, f) in enumerate(rows):
                for left, right, model in choice_runs(f.budgets, f.optimal_model):
                    if model is None:
                        continue
                    ax.barh(y, right - left, left=left, height=0.72, color=colors[model],
                            edgecolor="white", linewidth=0.6)
            ax.set_ylim(len(rows) - 0.45, -0.55)  # first method on top
            ax.set_yticks(range(len(rows)), [METHOD_NAMES[m] for m, *_ in rows])
            ax.tick_params(axis="y", length=0)
            if rows:
                grid = rows[0][3].budgets
                ax.set_xlim(grid[0] / 1.1, grid[-1] * 1.1)
            finish_panel(ax, law=law, xlabel="budget per query", ylabel="",
                         title=_panel_title(analysis, strategy, law), hardware=hardware,
                         synthetic=synthetic, legend_size=0)
            ax.grid(False)
            ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=colors[m], label=f"{m} ({models[m].active_params / 1e9:.3g}B)")
               for m in names]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False,
               title="optimal model\n(active params)", title_fontsize=8)
    _title(fig, "optimal model vs budget (blank: nothing fits), Kinetics law vs FLOPs-only law",
           synthetic)
    return fig
