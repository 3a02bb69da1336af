"""Cost-accuracy frontiers over strategy options, under a cost law (intensity I).

An *options* table (from :mod:`kinetics.strategies`) holds per query one row per
(model, config, N or generation budget) with an accuracy and its compute FLOPs and
memory bytes. Under a law of intensity I (FLOPs per byte; I = 0 is the previous
FLOPs-only law) an option's cost is eFLOPs = compute_flops + I * memory_bytes.

For a grid of budgets (eFLOPs):

* frontier accuracy = mean over queries of the best accuracy among the options
  whose cost fits the budget (a query with nothing that fits scores 0);
* the optimal model = the model whose own frontier (the same, restricted to its
  options) is highest at that budget, ties to the smaller model; null when no
  option of any model fits; ``config`` = that model's best config there;
* the Pareto set = the (mean cost, mean accuracy) points of options, averaged
  over queries, that no cheaper-or-equal option beats.

All functions are pure and vectorized: one ``np.maximum.at`` scatter per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kinetics.hardware import B200_FLOPS_PER_S
from kinetics.models import ModelSpec

LAWS: tuple[str, ...] = ("kinetics", "flops")
# The paper's grids (eFLOPs): 100 log-spaced points, 45 to 4e4 "TFLOPs" (x1e12)
# for Best-of-N and 45 to 1e5 for long-CoT.
GRIDS: dict[str, tuple[float, float]] = {"best_of_n": (45e12, 4e16), "long_cot": (45e12, 1e17),
                                         "majority_vote": (45e12, 4e16)}
GRID_POINTS = 100


def budget_grid(low: float, high: float, points: int = GRID_POINTS) -> np.ndarray:
    """``points`` log-spaced budgets from ``low`` to ``high`` eFLOPs."""
    return np.geomspace(low, high, points)


def law_intensity(law: str, intensity: float) -> float:
    """The intensity a law prices bytes at: I for 'kinetics', 0 for 'flops'."""
    return float(intensity) if law == "kinetics" else 0.0


def option_cost(options: pd.DataFrame, intensity: float) -> np.ndarray:
    """eFLOPs = compute_flops + I * memory_bytes per option row."""
    return (options["compute_flops"].to_numpy(dtype=np.float64)
            + intensity * options["memory_bytes"].to_numpy(dtype=np.float64))


def best_per_query(cost: np.ndarray, accuracy: np.ndarray, query: np.ndarray, unit: np.ndarray,
                   n_queries: int, n_units: int, budgets: np.ndarray) -> np.ndarray:
    """(units, queries, budgets) best accuracy among options that fit; -1 where none fits.

    ``query`` and ``unit`` are integer codes per option (a unit is any grouping of
    options, e.g. one (model, config)).
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    order = np.argsort(budgets)
    first_fit = np.searchsorted(budgets[order], cost, side="left")  # first budget >= cost
    best = np.full((n_units, n_queries, len(budgets) + 1), -1.0)
    np.maximum.at(best, (unit, query, first_fit), accuracy)
    best = np.maximum.accumulate(best, axis=2)[:, :, :-1]
    out = np.empty_like(best)
    out[:, :, order] = best
    return out


@dataclass(frozen=True)
class Frontier:
    """One law x strategy x method family frontier over a budget grid.

    Attributes:
        budgets: eFLOPs, shape (G,).
        accuracy: mean over queries of the per-query best, (G,).
        per_query: per-query best over all models, -1 where nothing fits, (Q, G).
        models: model names, smallest first, (M,).
        model_accuracy: each model's own frontier, (M, G).
        optimal_model: name or None, (G,) object array.
        config: the optimal model's best config or None, (G,) object array.
        queries: query ids, (Q,).
    """

    budgets: np.ndarray
    accuracy: np.ndarray
    per_query: np.ndarray
    models: list[str]
    model_accuracy: np.ndarray
    optimal_model: np.ndarray
    config: np.ndarray
    queries: np.ndarray


def compute_frontier(options: pd.DataFrame, budgets: Sequence[float] | np.ndarray,
                     intensity: float, *, metric: str = "accuracy",
                     model_specs: dict[str, ModelSpec] | None = None) -> Frontier:
    """Frontier of one options table (already filtered to one method family).

    ``metric`` names the accuracy column; ``intensity`` in FLOPs per byte (0 for
    the FLOPs-only law); budgets in eFLOPs. Models are ordered by active
    parameters when ``model_specs`` is given, else by name.
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    options = options[options[metric].notna()]
    names = list(pd.unique(options["model"]))
    if model_specs is not None:
        names.sort(key=lambda m: (model_specs[m].active_params, m))
    else:
        names.sort()
    model_code = pd.Categorical(options["model"], categories=names).codes.astype(np.int64)
    unit, unit_keys = pd.factorize(pd.MultiIndex.from_arrays(
        [model_code, options["config"].to_numpy()]))
    query, queries = pd.factorize(options["query_id"])
    cost = option_cost(options, intensity)
    acc = options[metric].to_numpy(dtype=np.float64)
    per_unit = best_per_query(cost, acc, query, unit, len(queries), len(unit_keys), budgets)

    unit_model = np.asarray(unit_keys.get_level_values(0), dtype=np.int64)
    unit_config = np.asarray(unit_keys.get_level_values(1), dtype=object)
    per_model = np.full((len(names),) + per_unit.shape[1:], -1.0)
    np.maximum.at(per_model, unit_model, per_unit)
    per_query = per_model.max(axis=0, initial=-1.0)
    accuracy = np.clip(per_query, 0, None).mean(axis=0) if len(queries) else np.zeros(len(budgets))
    model_acc = np.clip(per_model, 0, None).mean(axis=1)
    model_fits = (per_model >= 0).any(axis=1)
    score = np.where(model_fits, model_acc, -1.0)
    best_model = score.argmax(axis=0)  # first max: smallest model on ties
    any_fit = model_fits.any(axis=0)
    unit_acc = np.where((per_unit >= 0).any(axis=1), np.clip(per_unit, 0, None).mean(axis=1), -1.0)
    unit_score = np.where(unit_model[:, None] == best_model[None, :], unit_acc, -2.0)
    best_unit = unit_score.argmax(axis=0)
    name_arr = np.asarray(names, dtype=object)
    optimal = np.where(any_fit, name_arr[best_model] if names else None, None)
    config = np.where(any_fit, unit_config[best_unit] if len(unit_config) else None, None)
    return Frontier(budgets, accuracy, per_query, names, model_acc, optimal.astype(object),
                    config.astype(object), np.asarray(queries, dtype=object))


def pareto_points(options: pd.DataFrame, intensity: float, *, param: str,
                  metric: str = "accuracy") -> pd.DataFrame:
    """Non-dominated (mean cost, mean accuracy) options, averaged over queries.

    Returns columns model, config, ``param``, cost_eflops, accuracy sorted by cost;
    each point is strictly more accurate than every cheaper one.
    """
    frame = options.assign(cost_eflops=option_cost(options, intensity))
    agg = (frame.groupby(["model", "config", param], sort=False)
           .agg(cost_eflops=("cost_eflops", "mean"), accuracy=(metric, "mean"))
           .reset_index().dropna(subset=["accuracy"]))
    agg = agg.sort_values(["cost_eflops", "accuracy"], ascending=[True, False], kind="stable")
    prior = np.maximum.accumulate(np.r_[-np.inf, agg["accuracy"].to_numpy()[:-1]])
    return agg[agg["accuracy"].to_numpy() > prior].reset_index(drop=True)


def frontier_table(frontiers: dict[tuple[str, str, str], Frontier]) -> pd.DataFrame:
    """Long table (law, strategy, method, budget_eflops, b200_seconds, accuracy, model,
    model_accuracy, config) from frontiers keyed by (law, strategy, method)."""
    parts = []
    for (law, strategy, method), f in frontiers.items():
        known = pd.notna(f.optimal_model)
        row = pd.Categorical(f.optimal_model, categories=f.models).codes
        own = np.where(known, f.model_accuracy[np.maximum(row, 0), np.arange(len(row))]
                       if len(f.models) else np.nan, np.nan)
        parts.append(pd.DataFrame({
            "law": law, "strategy": strategy, "method": method,
            "budget_eflops": f.budgets, "b200_seconds": f.budgets / B200_FLOPS_PER_S,
            "accuracy": f.accuracy, "model": f.optimal_model, "model_accuracy": own,
            "config": f.config,
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
