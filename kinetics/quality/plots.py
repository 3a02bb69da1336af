"""Figures of a quality sweep (matplotlib figures; the CLI saves them)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kinetics.quality.run import ConfigQuality, QualityRun


def _series(run: QualityRun) -> dict[str, list[ConfigQuality]]:
    """Results grouped by method, block size and page-means dtype, each sorted by budget."""
    groups: dict[str, list[ConfigQuality]] = {}
    for r in run.results:
        c = r.config
        key = ("oracle topk" if c.method == "topk" else f"blocktopk b={c.block_size}"
               + (f" {c.means_dtype}" if c.means_dtype else ""))
        groups.setdefault(key, []).append(r)
    return {k: sorted(v, key=lambda r: r.config.budget) for k, v in groups.items()}


def quality_vs_budget(run: QualityRun) -> Figure:
    """Recall (mean, 10th pct), top-1 agreement, KL and NLL increase vs budget (log2), in
    a 2 x 3 grid (the sixth cell holds the legend). KL is never negative: its axis
    starts at 0; the NLL increase can be, and its symlog axis crosses 0."""
    import matplotlib.pyplot as plt

    panels = [("recall_mean", "attention recall, mean"), ("recall_p10", "attention recall, p10"),
              ("top1_agreement", "top-1 agreement with dense"),
              ("kl_nats", "KL(dense || sparse), nats/token"),
              ("nll_delta_nats", "NLL increase over dense, nats/token")]
    fig, grid = plt.subplots(2, 3, figsize=(12, 7), layout="constrained")
    axes = grid.ravel()
    for label, results in _series(run).items():
        budgets = [r.config.budget for r in results]
        for ax, (field, _) in zip(axes, panels, strict=False):
            ax.plot(budgets, [getattr(r, field) for r in results], marker="o", label=label)
    for ax, (field, title) in zip(axes, panels, strict=False):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget, tokens per KV head")
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3)
        if field in ("recall_mean", "recall_p10", "top1_agreement"):
            ax.set_ylim(0, 1.05)
        else:  # symlog: room above the largest value (autoscale leaves none)
            values = [getattr(r, field) for r in run.results]
            ax.set_yscale("symlog", linthresh=1e-3)
            top = max(max(values, default=0.0) * 3, 1e-2)
            if field == "kl_nats":
                ax.set_ylim(0, top)
            else:
                ax.set_ylim(min(min(values, default=0.0) * 3, -1e-3), top)
                ax.axhline(0, color="grey", linewidth=0.8)
    axes[-1].axis("off")
    axes[-1].legend(*axes[0].get_legend_handles_labels(), loc="center", fontsize=11,
                    title="configuration", title_fontsize=11)
    fig.suptitle(f"{Path(run.model).name}: {run.tokens} tokens, {run.scored_positions} scored "
                 "positions", fontsize=12)
    return fig


def recall_per_layer(run: QualityRun) -> Figure:
    """Mean attention recall per layer: one panel per method/block size, one line per budget."""
    import matplotlib.pyplot as plt

    groups = _series(run)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.0 * len(groups), 3.8), squeeze=False,
                             sharey=True, layout="constrained")
    for ax, (label, results) in zip(axes[0], groups.items(), strict=True):
        for r in results:
            ax.plot(range(len(r.recall_per_layer)), r.recall_per_layer,
                    label=f"k={r.config.budget}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean attention recall")
    axes[0][0].set_ylim(0, 1.05)
    axes[0][-1].legend(fontsize=8)
    return fig
