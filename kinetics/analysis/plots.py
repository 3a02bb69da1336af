"""Report figures (matplotlib, Agg). Each function returns a Figure; the CLI saves it.

Costs are eFLOPs on the x axis (log; FLOPs for the FLOPs-only law), with seconds at the
chosen hardware's peak FLOP/s on a secondary axis (none for a custom intensity, which
names no peak).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from kinetics.analysis.frontier import LAWS, law_intensity, option_cost  # noqa: E402
from kinetics.analysis.report import STRATEGIES, SUMMARY_STRATEGIES, Analysis  # noqa: E402
from kinetics.hardware import Hardware  # noqa: E402
from kinetics.models import ModelSpec  # noqa: E402

LAW_TITLES = {"kinetics": "Kinetics law (eFLOPs, I = {I:g})", "flops": "FLOPs-only law (I = 0)"}
LAW_UNITS = {"kinetics": "eFLOPs", "flops": "FLOPs"}
STRATEGY_NAMES = {"best_of_n": "Best-of-N", "long_cot": "long CoT"}
METHOD_NAMES = {"dense": "dense", "topk": "top-k", "blocktopk": "block top-k"}
METHOD_STYLE = {"dense": ("black", "-"), "topk": ("tab:blue", "--"), "blocktopk": ("tab:red", "-.")}


def _seconds_axis(ax: plt.Axes, hardware: Hardware | None) -> None:
    """Secondary x axis: cost / the hardware's peak FLOP/s; none without a preset."""
    if hardware is None:
        return
    peak = hardware.peak_flops_per_s
    sec = ax.secondary_xaxis("top", functions=(lambda x: x / peak, lambda s: s * peak))
    sec.set_xlabel(f"{hardware.name.upper()} seconds (at {peak / 1e15:.3g} PFLOP/s)", fontsize=8)


def _title(fig: Figure, text: str, synthetic: bool) -> None:
    fig.suptitle(("SYNTHETIC data: " if synthetic else "") + text, fontsize=11,
                 color="darkred" if synthetic else "black")


def _finish_panel(ax: plt.Axes, *, xlabel: str, ylabel: str, title: str,
                  hardware: Hardware | None, legend_size: int = 7) -> None:
    """Log x axis, labels, grid, seconds axis and legend of one panel."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    _seconds_axis(ax, hardware)
    ax.legend(fontsize=legend_size)


def _panel_title(analysis: Analysis, strategy: str, law: str, note: str = "") -> str:
    return f"{STRATEGY_NAMES[strategy]}{note}: " + LAW_TITLES[law].format(I=analysis.intensity)


def _strategies(analysis: Analysis) -> list[str]:
    return [s for s in SUMMARY_STRATEGIES if s in analysis.options]


def accuracy_vs_cost(analysis: Analysis, models: Mapping[str, ModelSpec], *,
                     synthetic: bool, hardware: Hardware | None = None) -> Figure:
    """Per model: accuracy vs mean cost over N (Best-of-N) and budgets (long-CoT), for
    dense attention; a table without dense rows shows its first attention method and
    says so in the panel titles."""
    strategies = _strategies(analysis)
    fig, axes = plt.subplots(len(strategies), len(LAWS), figsize=(12, 4.5 * len(strategies)),
                             squeeze=False, constrained_layout=True)
    names = sorted({m for o in analysis.options.values() for m in o["model"].unique()},
                   key=lambda m: models[m].active_params)
    colors = plt.cm.tab10(np.arange(len(names)) % 10)  # qualitative: sizes easy to tell apart
    for r, strategy in enumerate(strategies):
        metric, param = STRATEGIES[strategy]
        table = analysis.options[strategy]
        present = [m for m in METHOD_STYLE if (table["method"] == m).any()]
        method = "dense" if "dense" in present or not present else present[0]
        shown = table[table["method"] == method]
        note = "dense" if method == "dense" else f"no dense rows, showing {METHOD_NAMES[method]}"
        for c, law in enumerate(LAWS):
            ax = axes[r, c]
            intensity = law_intensity(law, analysis.intensity)
            agg = (shown.assign(cost=option_cost(shown, intensity))
                   .groupby(["model", param]).agg(cost=("cost", "mean"), acc=(metric, "mean"))
                   .reset_index())
            for color, name in zip(colors, names, strict=False):
                part = agg[agg["model"] == name].sort_values(param)
                ax.plot(part["cost"], part["acc"], marker=".", color=color, label=name)
            _finish_panel(ax, xlabel=f"cost per query, {LAW_UNITS[law]}",
                          ylabel="coverage (pass@N)" if strategy == "best_of_n" else "accuracy",
                          title=_panel_title(analysis, strategy, law, f", {note}"),
                          hardware=hardware)
    _title(fig, "accuracy vs cost per model", synthetic)
    return fig


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
    fig, axes = plt.subplots(len(strategies), len(LAWS), figsize=(12, 4.5 * len(strategies)),
                             squeeze=False, constrained_layout=True)
    for r, strategy in enumerate(strategies):
        for c, law in enumerate(LAWS):
            ax = axes[r, c]
            for method, color, style, f in _method_frontiers(analysis, law, strategy):
                ax.plot(f.budgets, f.accuracy, style, color=color, label=METHOD_NAMES[method])
            ax.set_ylim(0, 1.02)
            _finish_panel(ax, xlabel=f"budget per query, {LAW_UNITS[law]}",
                          ylabel="frontier accuracy", title=_panel_title(analysis, strategy, law),
                          hardware=hardware, legend_size=8)
    _title(fig, "Pareto frontier, dense vs sparse attention", synthetic)
    return fig


def optimal_model_size(analysis: Analysis, models: Mapping[str, ModelSpec], *,
                       synthetic: bool, hardware: Hardware | None = None) -> Figure:
    """The optimal model vs budget, one panel per law (rows) and strategy (columns), one
    step line per attention method; y ticks name the models at their active parameters."""
    strategies = _strategies(analysis)
    fig, axes = plt.subplots(len(LAWS), len(strategies), figsize=(6 * len(strategies), 8),
                             squeeze=False, constrained_layout=True)
    shown = {m for o in analysis.options.values() for m in o["model"].unique()}
    ticks = sorted((models[m].active_params / 1e9, m) for m in shown)
    for r, law in enumerate(LAWS):
        for c, strategy in enumerate(strategies):
            ax = axes[r, c]
            for method, color, style, f in _method_frontiers(analysis, law, strategy):
                size = pd.Series(f.optimal_model).map(
                    lambda m: np.nan if pd.isna(m) else models[m].active_params / 1e9)
                ax.step(f.budgets, size.to_numpy(dtype=float), style, where="post", color=color,
                        label=METHOD_NAMES[method], linewidth=2.2 if method == "dense" else 1.4)
            ax.set_yscale("log")
            ax.set_yticks([t for t, _ in ticks], [name for _, name in ticks], minor=False)
            ax.set_yticks([], minor=True)
            _finish_panel(ax, xlabel=f"budget per query, {LAW_UNITS[law]}",
                          ylabel="optimal model", title=_panel_title(analysis, strategy, law),
                          hardware=hardware)
    _title(fig, "optimal model vs budget, Kinetics law vs FLOPs-only law", synthetic)
    return fig
