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
    """Recall (mean, 10th pct), top-1 agreement, KL and NLL increase vs budget (log2)."""
    import matplotlib.pyplot as plt

    panels = [("recall_mean", "attention recall, mean"), ("recall_p10", "attention recall, p10"),
              ("top1_agreement", "top-1 agreement with dense"),
              ("kl_nats", "KL(dense || sparse), nats/token"),
              ("nll_delta_nats", "NLL increase, nats/token")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.4))
    for label, results in _series(run).items():
        budgets = [r.config.budget for r in results]
        for ax, (field, _) in zip(axes, panels, strict=True):
            ax.plot(budgets, [getattr(r, field) for r in results], marker="o", label=label)
    for ax, (field, title) in zip(axes, panels, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget, tokens per KV head")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if field in ("kl_nats", "nll_delta_nats"):
            ax.set_yscale("symlog", linthresh=1e-3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{Path(run.model).name}: {run.tokens} tokens, {run.scored_positions} scored positions",
                 fontsize=10)
    fig.tight_layout()
    return fig


def recall_per_layer(run: QualityRun) -> Figure:
    """Mean attention recall per layer: one panel per method/block size, one line per budget."""
    import matplotlib.pyplot as plt

    groups = _series(run)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.0 * len(groups), 3.4), squeeze=False,
                             sharey=True)
    for ax, (label, results) in zip(axes[0], groups.items(), strict=True):
        for r in results:
            ax.plot(range(len(r.recall_per_layer)), r.recall_per_layer,
                    label=f"k={r.config.budget}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean attention recall")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig
