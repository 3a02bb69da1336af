"""Measure, on the embedded (SYNTHETIC) trial table, how far the authors' notebook
conventions would move our numbers (docs/analysis.md, "Differences from the authors'
notebooks"). Prints one line per item; B200 intensity I = 562.5.

    PYTHONPATH=. python scripts/notebook_differences.py

The notebook formulas are restated here from the public Kinetics repository
(cost_model/utils.py and the frontier notebooks) as we read them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kinetics.analysis.frontier import GRIDS, budget_grid, compute_frontier, law_intensity
from kinetics.analysis.report import strategy_options
from kinetics.analysis.trials import load_trials, resolve_models
from kinetics.cost import AttentionConfig, sample_cost, shared_cost
from kinetics.models import MODELS

INTENSITY = 562.5  # B200, FLOPs per byte
LAWS = ("kinetics", "flops")


def notebook_kv_tokens(method: str, s, t, budget) -> np.ndarray:
    """The notebook's attended-token sum per sample: B*T +/- (B-S)^2/2 (top-k: +, block: -)."""
    sign = 1.0 if method == "topk" else -1.0
    return budget * t + sign * 0.5 * np.maximum(0, budget - s) ** 2


def topk_sign() -> None:
    model, s, t = MODELS["qwen3-8b"], 161, 500  # median prompt of the embedded set
    dense = 2 * (2 * s + t) * t  # notebook dense KV tokens (x h_kv d), N = 1
    note = 2 * 2 * notebook_kv_tokens("topk", s, t, 2048)
    ours_topk = float(sample_cost(model, AttentionConfig.topk(2048), s, t).memory_bytes)
    ours_dense = float((sample_cost(model, AttentionConfig.dense(), s, t)
                        + shared_cost(model, AttentionConfig.dense(), s, t)).memory_bytes)
    print(f"top-k 2048 memory / dense memory at S={s}, T={t}: notebook {note / dense:.1f}x, "
          f"ours {ours_topk / ours_dense:.2f}x")


def block_negative(trials: pd.DataFrame) -> None:
    rows = trials[trials["method"] == "blocktopk"]
    s, t, b = (rows[c].to_numpy(dtype=np.float64) for c in ("prompt_len", "gen_len", "budget"))
    kv = notebook_kv_tokens("blocktopk", s, t, b)
    print(f"block top-k rows with a negative notebook KV term: {int((kv < 0).sum())} of "
          f"{len(rows)} trial rows; with B > S + T: {int((b > s + t).sum())}; at S=100, T=500, "
          f"B=2048 the term is {notebook_kv_tokens('blocktopk', 100, 500, 2048):.0f} tokens")


def shared_prompt(options: pd.DataFrame, trials: pd.DataFrame) -> None:
    dense = options[options["method"] == "dense"].copy()
    tr = trials[trials["method"] == "dense"]
    per_query = tr.groupby(["model", "query_id"]).agg(s=("prompt_len", "first"),
                                                     mt=("gen_len", "mean"),
                                                     mt2=("gen_len", lambda x: (x ** 2).mean()))
    dense = dense.join(per_query, on=["model", "query_id"])
    kv = dense["model"].map(lambda m: 2 * MODELS[m].num_layers * MODELS[m].num_kv_heads
                            * MODELS[m].head_dim * 2)
    # notebook: mean over samples of 2*(2S + N*T)*T tokens (x h_kv d x bf16 bytes per layer)
    note = kv * (2 * dense["s"] * dense["mt"] + dense["n"] * dense["mt2"]) / 2
    ratio = note / dense["memory_bytes"]
    print(f"dense Best-of-N memory, notebook / ours over {len(dense)} options: "
          f"min {ratio.min():.3f}, median {ratio.median():.3f}, max {ratio.max():.3f}")


def grid_n(options: pd.DataFrame) -> None:
    grid = budget_grid(*GRIDS["best_of_n"])
    worst, changed = 0.0, 0
    for law in LAWS:
        for method in ("dense", "topk", "blocktopk"):
            part = options[options["method"] == method]
            a = compute_frontier(part, grid, law_intensity(law, INTENSITY), metric="coverage",
                                 model_specs=MODELS)
            b = compute_frontier(part[part["n"].isin([1, 2, 4, 8, 16, 32])], grid,
                                 law_intensity(law, INTENSITY), metric="coverage", model_specs=MODELS)
            worst = max(worst, float(np.abs(a.accuracy - b.accuracy).max()))
            changed += int((a.optimal_model != b.optimal_model).sum())
    print(f"N grid {{1,2,4,..,32}} vs every N: largest accuracy change {worst:.3f}; "
          f"optimal model differs at {changed} of {2 * 3 * len(grid)} grid points")


def name_tie_break(options: pd.DataFrame) -> None:
    grid = budget_grid(*GRIDS["best_of_n"])
    changed = 0
    for law in LAWS:
        for method in ("dense", "topk", "blocktopk"):
            part = options[options["method"] == method]
            a = compute_frontier(part, grid, law_intensity(law, INTENSITY), metric="coverage",
                                 model_specs=MODELS)
            b = compute_frontier(part, grid, law_intensity(law, INTENSITY), metric="coverage")
            changed += int((a.optimal_model != b.optimal_model).sum())
    print(f"tie-break by model name instead of size: optimal model differs at {changed} of "
          f"{2 * 3 * len(grid)} Best-of-N grid points")


def uniform_filter1d(values: np.ndarray, width: int) -> np.ndarray:
    """scipy.ndimage.uniform_filter1d (mode 'reflect': edge values repeated), odd width."""
    half = width // 2
    return np.convolve(np.pad(values, half, mode="symmetric"), np.ones(width) / width, "valid")


def smoothing(options: pd.DataFrame) -> None:
    grid = budget_grid(*GRIDS["best_of_n"])
    ahead, nothing, total = 0.0, 0, 0
    for law in LAWS:
        for method in ("dense", "topk", "blocktopk"):
            part = options[options["method"] == method]
            f = compute_frontier(part, grid, law_intensity(law, INTENSITY), metric="coverage",
                                 model_specs=MODELS)
            for acc, fits in zip(f.model_accuracy, f.model_fits, strict=True):
                smooth = uniform_filter1d(acc, 3)
                ahead = max(ahead, float((smooth - acc).max()))
                nothing += int(((smooth > 0) & ~fits).sum())
                total += len(acc)
    print(f"notebook width-3 smoothing of the per-model curves: up to +{ahead:.3f} above the "
          f"accuracy reachable at a budget; {nothing} of {total} (model, budget) points report "
          f"accuracy where nothing of the model fits")


def plot_shift(options: pd.DataFrame) -> None:
    grid = np.geomspace(20e12, 4e16, 100)  # the notebook's optimal-model grid
    for law in LAWS:
        part = options[options["method"] == "dense"]
        f = compute_frontier(part, grid, law_intensity(law, INTENSITY), metric="coverage",
                             model_specs=MODELS)
        none = int((~f.fits).sum())
        labels = [m for m in f.optimal_model if m is not None]
        shifted = ["qwen3-0.6b"] * none + labels  # the notebook pads the front, x keeps fits
        wrong = sum(a != b for a, b in zip(shifted[:len(labels)], labels, strict=True))
        print(f"optimal-model plot ({law}, Best-of-N dense): {none} grid points fit nothing, "
              f"so labels shift by {none} and {wrong} of {len(labels)} plotted points "
              f"show another model")


def per_query_config(options: pd.DataFrame) -> None:
    grid = budget_grid(*GRIDS["best_of_n"])
    worst = 0.0
    for law in LAWS:
        for method in ("topk", "blocktopk"):
            part = options[options["method"] == method]
            one = compute_frontier(part, grid, law_intensity(law, INTENSITY), metric="coverage",
                                   model_specs=MODELS)
            any_config = compute_frontier(part.assign(config=method), grid,
                                          law_intensity(law, INTENSITY), metric="coverage",
                                          model_specs=MODELS)
            worst = max(worst, float((any_config.accuracy - one.accuracy).max()))
    print(f"sparse: one config for all queries vs each query its own config of the model "
          f"(the notebooks' per-model curve): up to {worst:.3f} lower")


def param_counts(trials: pd.DataFrame) -> None:
    from kinetics.analysis.report import build_summary

    a = build_summary(trials, INTENSITY, hardware="b200", synthetic=True, source="embedded")
    b = build_summary(trials, INTENSITY, hardware="b200", synthetic=True, source="embedded",
                      param_count="derived")
    moved = sum(x.optimal_model != y.optimal_model for x, y in zip(a.entries, b.entries,
                                                                   strict=True))
    print(f"--param-count derived vs published: {moved} of {len(a.entries)} summary optimal "
          f"models change")


def main() -> None:
    trials, _ = load_trials(None)
    options = strategy_options(trials, resolve_models(trials), majority=False)["best_of_n"]
    topk_sign()
    block_negative(trials)
    shared_prompt(options, trials)
    grid_n(options)
    name_tie_break(options)
    smoothing(options)
    plot_shift(options)
    per_query_config(options)
    param_counts(trials)


if __name__ == "__main__":
    main()
