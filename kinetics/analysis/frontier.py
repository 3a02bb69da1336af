"""Cost-accuracy frontiers over strategy options, under a cost law (intensity I).

An *options* table (from :mod:`kinetics.analysis.strategies`) holds per query one row per
(model, config, N or generation budget) with an accuracy and its compute FLOPs and
memory bytes. Under a law of intensity I (FLOPs per byte; I = 0 is the previous
FLOPs-only law) an option's cost is eFLOPs = compute_flops + I * memory_bytes.

For a grid of budgets (eFLOPs):

* frontier accuracy (the paper's single-choice frontier) = the best, over one
  (model, config) pair used for every query, of the mean over queries of that
  pair's most accurate option (N or generation budget) whose cost fits the budget
  (a query with nothing that fits scores 0);
* the optimal model and ``config`` = that pair, ties to the smaller model (then
  the config name); null when no option of any model fits;
* per_query_oracle_accuracy = the mean over queries of each query's best option
  over all models and configs: what an oracle choosing per query would get;
* the Pareto set = the (mean cost, mean accuracy) points of options, averaged
  over queries, that no cheaper-or-equal option beats.

All functions are pure and vectorized: one ``np.maximum.at`` scatter per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from kinetics.errors import InputError
from kinetics.hardware import Hardware
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
        accuracy: the single-choice frontier (the paper's): the best, over
            (model, config), of the mean over queries of that pair's best option
            that fits (0 for a query where none fits; 0 where nothing fits at all), (G,).
        per_query_oracle_accuracy: mean over queries of each query's own best option
            over all models and configs (an upper bound, not a frontier), (G,).
        per_query: per-query best over all options, -1 where nothing fits, (Q, G).
        models: model names, smallest first, (M,).
        model_accuracy: each model's single-choice frontier (best config), (M, G).
        model_fits: whether any option of the model fits, (M, G).
        optimal_model: the chosen model or None where nothing fits, (G,) object array.
        config: the chosen config or None, (G,) object array.
        queries: query ids, (Q,).
    """

    budgets: np.ndarray
    accuracy: np.ndarray
    per_query_oracle_accuracy: np.ndarray
    per_query: np.ndarray
    models: list[str]
    model_accuracy: np.ndarray
    model_fits: np.ndarray
    optimal_model: np.ndarray
    config: np.ndarray
    queries: np.ndarray

    @property
    def fits(self) -> np.ndarray:
        """(G,) True where some option fits the budget."""
        return pd.notna(self.optimal_model).astype(bool)

    def smoothed(self, width: int) -> Frontier:
        """The same frontier with accuracy curves through :func:`moving_average`
        (choices unchanged); ``width`` 1 returns self."""
        if width == 1:
            return self
        return replace(
            self,
            accuracy=moving_average(self.accuracy, self.fits, width),
            per_query_oracle_accuracy=moving_average(self.per_query_oracle_accuracy, self.fits,
                                                     width),
            model_accuracy=np.array([moving_average(a, f, width) for a, f in
                                     zip(self.model_accuracy, self.model_fits, strict=True)]
                                    ).reshape(self.model_accuracy.shape))


def moving_average(values: np.ndarray, fits: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of odd ``width`` over grid points (the paper smooths its
    curves with width 3), the window cut at the grid ends; 0 where ``fits`` is False,
    so no accuracy is reported at a budget where nothing fits."""
    if width < 1 or width % 2 == 0:
        raise InputError(f"--smooth takes an odd width >= 1, got {width}")
    values = np.asarray(values, dtype=np.float64)
    half = width // 2
    padded = np.concatenate([np.zeros(half), values, np.zeros(half)])
    present = np.concatenate([np.zeros(half), np.ones(len(values)), np.zeros(half)])
    kernel = np.ones(width)
    total = np.convolve(padded, kernel, mode="valid")
    count = np.convolve(present, kernel, mode="valid")
    return np.where(fits, total / np.maximum(count, 1), 0.0)


def compute_frontier(options: pd.DataFrame, budgets: Sequence[float] | np.ndarray,
                     intensity: float, *, metric: str = "accuracy",
                     model_specs: Mapping[str, ModelSpec] | None = None) -> Frontier:
    """Frontier of one options table (already filtered to one method family).

    ``metric`` names the accuracy column; ``intensity`` in FLOPs per byte (0 for
    the FLOPs-only law); budgets in eFLOPs. Models are ordered by active
    parameters when ``model_specs`` is given, else by name; ties between
    (model, config) pairs go to the smaller model, then the config name.
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    options = options[options[metric].notna()]
    names = list(pd.unique(options["model"]))
    if model_specs is not None:
        names.sort(key=lambda m: (model_specs[m].active_params, m))
    else:
        names.sort()
    code, seen = pd.factorize(options["model"])
    model_code = np.array([names.index(m) for m in seen], dtype=np.int64)[code]
    config_code, config_names = pd.factorize(options["config"])
    by_name = np.argsort(np.asarray(config_names, dtype=str), kind="stable")
    rank = np.empty(len(config_names), dtype=np.int64)
    rank[by_name] = np.arange(len(config_names))
    pair = model_code * max(len(config_names), 1) + rank[config_code]
    unit_pairs, unit = np.unique(pair, return_inverse=True)  # model, then config name order
    unit = unit.ravel()
    unit_model = unit_pairs // max(len(config_names), 1)
    unit_config = np.asarray(config_names, dtype=object)[by_name][unit_pairs
                                                                  % max(len(config_names), 1)]
    query, queries = pd.factorize(options["query_id"])
    cost = option_cost(options, intensity)
    acc = options[metric].to_numpy(dtype=np.float64)
    per_unit = best_per_query(cost, acc, query, unit, len(queries), len(unit_pairs), budgets)
    per_query = per_unit.max(axis=0, initial=-1.0)
    oracle = (np.clip(per_query, 0, None).mean(axis=0) if len(queries)
              else np.zeros(len(budgets)))

    unit_fits = (per_unit >= 0).any(axis=1)  # (U, G)
    unit_acc = np.clip(per_unit, 0, None).mean(axis=1) if len(queries) else unit_fits * 0.0
    score = np.where(unit_fits, unit_acc, -1.0)
    model_acc = np.full((len(names), len(budgets)), -1.0)
    np.maximum.at(model_acc, unit_model, score)
    model_fits = model_acc >= 0
    any_fit = unit_fits.any(axis=0)
    best_unit = score.argmax(axis=0) if len(unit_pairs) else np.zeros(len(budgets), dtype=int)
    accuracy = np.where(any_fit, score.max(axis=0, initial=0.0), 0.0)
    name_arr = np.array(names + [None], dtype=object)[:-1]
    optimal = np.where(any_fit, name_arr[unit_model[best_unit]] if names else None, None)
    config = np.where(any_fit, unit_config[best_unit] if len(unit_pairs) else None, None)
    return Frontier(budgets, accuracy, oracle, per_query, names, np.clip(model_acc, 0, None),
                    model_fits, optimal.astype(object), config.astype(object),
                    np.asarray(queries, dtype=object))


def option_means(options: pd.DataFrame, *, param: str, metric: str = "accuracy",
                 by: Sequence[str] = ()) -> pd.DataFrame:
    """Options averaged over queries: columns ``by``, model, config, ``param``,
    compute_flops, memory_bytes, accuracy (the mean ``metric``), queries (how many rows
    have a ``metric``), rows without an accuracy dropped. Any law's mean cost follows
    from it, mean compute_flops + I * mean memory_bytes (the mean is linear), so one call
    serves every law."""
    keys = [*by, "model", "config", param]
    return (options.groupby(keys, sort=False)
            .agg(compute_flops=("compute_flops", "mean"), memory_bytes=("memory_bytes", "mean"),
                 accuracy=(metric, "mean"), queries=(metric, "count"))
            .reset_index().dropna(subset=["accuracy"]))


def pareto_front(means: pd.DataFrame, intensity: float) -> pd.DataFrame:
    """Non-dominated rows of :func:`option_means` under intensity I: a cost_eflops column
    added (replacing compute_flops and memory_bytes), sorted by cost, each row strictly
    more accurate than every cheaper one."""
    frame = means.assign(cost_eflops=option_cost(means, intensity)).drop(
        columns=["compute_flops", "memory_bytes", "queries"])
    frame = frame.sort_values(["cost_eflops", "accuracy"], ascending=[True, False], kind="stable")
    prior = np.maximum.accumulate(np.r_[-np.inf, frame["accuracy"].to_numpy()[:-1]])
    frame = frame[frame["accuracy"].to_numpy() > prior].reset_index(drop=True)
    return frame[[c for c in frame.columns if c != "accuracy"] + ["accuracy"]]


def pareto_points(options: pd.DataFrame, intensity: float, *, param: str,
                  metric: str = "accuracy") -> pd.DataFrame:
    """Non-dominated (mean cost, mean accuracy) options, averaged over queries.

    Returns columns model, config, ``param``, cost_eflops, accuracy sorted by cost;
    each point is strictly more accurate than every cheaper one.
    """
    return pareto_front(option_means(options, param=param, metric=metric), intensity)


def seconds_column(hardware: Hardware) -> str:
    """The name of the budget-in-seconds column for ``hardware``: 'h100_seconds',
    'b200_fp8_seconds'."""
    return f"{hardware.name.replace('-', '_')}_seconds"


def frontier_table(frontiers: Mapping[tuple[str, str, str], Frontier],
                   hardware: Hardware | None = None) -> pd.DataFrame:
    """Long table (law, strategy, method, budget_eflops, [<hardware>_seconds,] accuracy,
    model, config, per_query_oracle_accuracy) from frontiers keyed by (law, strategy,
    method). With a ``hardware`` preset, :func:`seconds_column` holds the budget / its
    peak FLOP/s (compute + memory time under the Kinetics law, compute time alone
    under the FLOPs-only law); without one (a custom intensity) there is no such column."""
    seconds = {} if hardware is None else {
        seconds_column(hardware): lambda f: f.budgets / hardware.peak_flops_per_s}
    parts = [pd.DataFrame({
        "law": law, "strategy": strategy, "method": method, "budget_eflops": f.budgets,
        **{name: per(f) for name, per in seconds.items()},
        "accuracy": f.accuracy, "model": f.optimal_model, "config": f.config,
        "per_query_oracle_accuracy": f.per_query_oracle_accuracy,
    }) for (law, strategy, method), f in frontiers.items()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
