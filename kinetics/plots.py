"""Report figures (matplotlib, Agg). Each function returns a Figure; the CLI saves it.

Costs are eFLOPs on the x axis (log), with B200 seconds (eFLOPs / 4.5e15) on a
secondary axis.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from kinetics.frontier import B200_FLOPS_PER_S, LAWS, option_cost  # noqa: E402
from kinetics.models import ModelSpec  # noqa: E402
from kinetics.report import STRATEGIES, Analysis  # noqa: E402

LAW_TITLES = {"kinetics": "Kinetics law (eFLOPs, I = {I:g})", "flops": "FLOPs-only law (I = 0)"}
METHOD_STYLE = {"dense": ("black", "-"), "topk": ("tab:blue", "--"), "blocktopk": ("tab:red", "-.")}


def _b200_axis(ax: plt.Axes) -> None:
    sec = ax.secondary_xaxis("top", functions=(lambda x: x / B200_FLOPS_PER_S,
                                               lambda s: s * B200_FLOPS_PER_S))
    sec.set_xlabel("B200 seconds")


def _title(fig: Figure, text: str, synthetic: bool) -> None:
    fig.suptitle(("SYNTHETIC data -- " if synthetic else "") + text, fontsize=11,
                 color="darkred" if synthetic else "black")


def accuracy_vs_cost(analysis: Analysis, models: Mapping[str, ModelSpec], *,
                     synthetic: bool) -> Figure:
    """Per model, dense: accuracy vs mean cost over N (Best-of-N) and budgets (long-CoT)."""
    strategies = [s for s in ("best_of_n", "long_cot") if s in analysis.options]
    fig, axes = plt.subplots(len(strategies), len(LAWS), figsize=(12, 4.5 * len(strategies)),
                             squeeze=False, constrained_layout=True)
    names = sorted({m for o in analysis.options.values() for m in o["model"].unique()},
                   key=lambda m: models[m].active_params)
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(names), 1)))
    for r, strategy in enumerate(strategies):
        metric, param = STRATEGIES[strategy]
        table = analysis.options[strategy]
        dense = table[table["method"] == "dense"]
        for c, law in enumerate(LAWS):
            ax = axes[r, c]
            intensity = analysis.intensity if law == "kinetics" else 0.0
            agg = (dense.assign(cost=option_cost(dense, intensity))
                   .groupby(["model", param]).agg(cost=("cost", "mean"), acc=(metric, "mean"))
                   .reset_index())
            for color, name in zip(colors, names, strict=False):
                part = agg[agg["model"] == name].sort_values(param)
                ax.plot(part["cost"], part["acc"], marker=".", color=color, label=name)
            ax.set_xscale("log")
            ax.set_xlabel("cost per query, eFLOPs" if law == "kinetics" else "cost per query, FLOPs")
            ax.set_ylabel("coverage (pass@N)" if strategy == "best_of_n" else "accuracy")
            ax.set_title(f"{strategy}, dense -- " + LAW_TITLES[law].format(I=analysis.intensity),
                         fontsize=9)
            ax.grid(alpha=0.3)
            _b200_axis(ax)
            ax.legend(fontsize=7)
    _title(fig, "accuracy vs cost per model", synthetic)
    return fig


def pareto_dense_vs_sparse(analysis: Analysis, *, synthetic: bool) -> Figure:
    """Frontier accuracy vs budget: dense vs each sparse method, per law and strategy."""
    strategies = [s for s in ("best_of_n", "long_cot") if s in analysis.options]
    fig, axes = plt.subplots(len(strategies), len(LAWS), figsize=(12, 4.5 * len(strategies)),
                             squeeze=False, constrained_layout=True)
    for r, strategy in enumerate(strategies):
        for c, law in enumerate(LAWS):
            ax = axes[r, c]
            for method, (color, style) in METHOD_STYLE.items():
                f = analysis.frontiers.get((law, strategy, method))
                if f is None:
                    continue
                ax.plot(f.budgets, f.accuracy, style, color=color, label=method)
            ax.set_xscale("log")
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("budget per query, eFLOPs")
            ax.set_ylabel("frontier accuracy")
            ax.set_title(f"{strategy} -- " + LAW_TITLES[law].format(I=analysis.intensity),
                         fontsize=9)
            ax.grid(alpha=0.3)
            _b200_axis(ax)
            ax.legend(fontsize=8)
    _title(fig, "Pareto frontier, dense vs sparse attention", synthetic)
    return fig


def optimal_model_size(analysis: Analysis, models: Mapping[str, ModelSpec], *,
                       synthetic: bool) -> Figure:
    """Optimal model's active parameters vs budget, Kinetics vs FLOPs-only law."""
    strategies = [s for s in ("best_of_n", "long_cot") if s in analysis.options]
    fig, axes = plt.subplots(1, len(strategies), figsize=(6 * len(strategies), 4.5),
                             squeeze=False, constrained_layout=True)
    for c, strategy in enumerate(strategies):
        ax = axes[0, c]
        for law, color in (("kinetics", "tab:green"), ("flops", "tab:orange")):
            for method, (_color, style) in METHOD_STYLE.items():
                f = analysis.frontiers.get((law, strategy, method))
                if f is None:
                    continue
                size = pd.Series(f.optimal_model).map(
                    lambda m: np.nan if pd.isna(m) else models[m].active_params / 1e9)
                ax.step(f.budgets, size.to_numpy(dtype=float), style, where="post", color=color,
                        label=f"{law}, {method}", alpha=1.0 if method == "dense" else 0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        sizes = sorted({models[m].active_params / 1e9 for m in models})
        ax.set_yticks(sizes, [f"{s:g}B" for s in sizes], minor=False)
        ax.set_yticks([], minor=True)
        ax.set_xlabel("budget per query, eFLOPs (FLOPs for the FLOPs-only law)")
        ax.set_ylabel("optimal model, billions of active parameters")
        ax.set_title(strategy, fontsize=9)
        ax.grid(alpha=0.3)
        _b200_axis(ax)
        ax.legend(fontsize=7)
    _title(fig, f"optimal model size vs budget (Kinetics I = {analysis.intensity:g} vs FLOPs)",
           synthetic)
    return fig
