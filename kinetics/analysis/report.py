"""The whole analysis of a trial table: strategies x laws x method families.

Pure: DataFrames in, DataFrames and dicts out. The ``kinetics report`` command
(kinetics/cli/report_cmd.py) does the file I/O; :func:`build_summary` is the
regression-gate payload ``kinetics check`` compares.

Strategies:

* ``best_of_n``: coverage (pass@N) of N samples, N = 1..trials;
* ``long_cot``: one sample cut at a generation budget;
* ``majority_vote``: Best-of-N scored by majority vote (only when answers are known;
  in frontier.csv, not in summary.json).

Laws: ``kinetics`` (eFLOPs at intensity I) and ``flops`` (I = 0, memory ignored).
Method families: each attention method alone (``dense``, ``topk``, ``blocktopk``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from kinetics.analysis.frontier import (
    GRID_POINTS,
    GRIDS,
    LAWS,
    Frontier,
    budget_grid,
    compute_frontier,
    frontier_table,
    law_intensity,
    option_means,
    pareto_front,
)
from kinetics.analysis.strategies import DEFAULT_GEN_BUDGETS, best_of_n, long_cot
from kinetics.analysis.trials import resolve_models
from kinetics.cost import DEFAULT_SETTINGS, METHODS, CostSettings
from kinetics.hardware import Hardware
from kinetics.models import ModelSpec

# strategy -> (accuracy column in its options table, option parameter column)
STRATEGIES: dict[str, tuple[str, str]] = {
    "best_of_n": ("coverage", "n"),
    "long_cot": ("accuracy", "gen_budget"),
    "majority_vote": ("majority", "n"),
}
SUMMARY_STRATEGIES: tuple[str, ...] = ("best_of_n", "long_cot")
# Fixed budgets of summary.json, eFLOPs (inside both of the paper's grids).
SUMMARY_BUDGETS: tuple[float, ...] = (1e14, 3e14, 1e15, 3e15, 1e16, 3e16)
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Analysis:
    """Everything a report shows.

    Attributes:
        options: strategy -> per-query options table (compute FLOPs, memory bytes).
        frontiers: (law, strategy, method) -> Frontier over the strategy's grid.
        frontier: the long frontier table (frontier.csv).
        pareto: Pareto points (pareto.csv), with law, strategy, method columns.
        intensity: I of the Kinetics law, FLOPs per byte.
        means: strategy -> its options averaged over queries per method, model, config
            and N or generation budget (:func:`kinetics.analysis.frontier.option_means`):
            all the figures need of the options.
    """

    options: dict[str, pd.DataFrame]
    frontiers: dict[tuple[str, str, str], Frontier]
    frontier: pd.DataFrame
    pareto: pd.DataFrame
    intensity: float
    means: dict[str, pd.DataFrame]


def strategy_options(trials: pd.DataFrame, models: Mapping[str, ModelSpec], *,
                     gen_budgets: Sequence[int] = DEFAULT_GEN_BUDGETS,
                     majority: bool = True,
                     settings: CostSettings = DEFAULT_SETTINGS) -> dict[str, pd.DataFrame]:
    """Options tables per strategy, priced with ``settings``; ``majority_vote`` only when
    answers are known (and ``majority``)."""
    bon = best_of_n(trials, models, majority=majority, settings=settings)
    options = {"best_of_n": bon, "long_cot": long_cot(trials, models, gen_budgets, settings)}
    if bon["majority"].notna().any():
        options["majority_vote"] = bon
    return options


def _frontiers(options: Mapping[str, pd.DataFrame], models: Mapping[str, ModelSpec],
               intensity: float, budgets: Callable[[str], np.ndarray],
               strategies: Sequence[str], tick: Callable[[str], None] | None = None,
               ) -> dict[tuple[str, str, str], Frontier]:
    out: dict[tuple[str, str, str], Frontier] = {}
    for law in LAWS:
        for strategy in strategies:
            if strategy not in options:
                continue
            table = options[strategy]
            metric = STRATEGIES[strategy][0]
            for method in METHODS:
                subset = table[table["method"] == method]
                if subset.empty:
                    continue
                out[(law, strategy, method)] = compute_frontier(
                    subset, budgets(strategy), law_intensity(law, intensity), metric=metric,
                    model_specs=dict(models))
            if tick:
                tick(f"frontier {law} {strategy}")
    return out


def analyze(trials: pd.DataFrame, models: Mapping[str, ModelSpec], intensity: float, *,
            gen_budgets: Sequence[int] = DEFAULT_GEN_BUDGETS, grid_points: int = GRID_POINTS,
            smooth: int = 1, tick: Callable[[str], None] | None = None,
            settings: CostSettings = DEFAULT_SETTINGS,
            hardware: Hardware | None = None,
            early: Callable[[Analysis], None] | None = None) -> Analysis:
    """Run both laws, all strategies and method families over a validated table.

    ``intensity`` in FLOPs per byte; ``settings`` the element types and parameter
    reads the costs are priced with; ``hardware`` the preset behind ``intensity``, if
    any (it gives frontier.csv its seconds column); ``smooth`` an odd moving-average width over the
    grid for the frontier curves (1 = off; see :func:`kinetics.analysis.frontier.moving_average`);
    ``tick`` (optional) is called after each step with a short label (the CLI drives
    a progress bar with it); ``early`` (optional) as soon as the options and their means
    exist, with an Analysis that has only those (no frontiers yet), e.g. to start
    drawing what needs nothing more.
    """
    options = strategy_options(trials, models, gen_budgets=gen_budgets, settings=settings)
    means = {s: option_means(table, param=STRATEGIES[s][1], metric=STRATEGIES[s][0],
                             by=["method"]) for s, table in options.items()}
    if tick:
        tick("strategies")
    if early:
        early(Analysis(options, {}, pd.DataFrame(), pd.DataFrame(), float(intensity), means))
    frontiers = _frontiers(options, models, intensity,
                           lambda s: budget_grid(*GRIDS[s], grid_points), list(options), tick)
    frontiers = {key: f.smoothed(smooth) for key, f in frontiers.items()}
    pareto = []
    for (law, strategy, method), _f in frontiers.items():
        param = STRATEGIES[strategy][1]
        table = means[strategy]
        points = pareto_front(table[table["method"] == method].drop(columns="method"),
                              law_intensity(law, intensity))
        pareto.append(points.rename(columns={param: "param"}).assign(
            law=law, strategy=strategy, method=method, param_name=param))
    pareto_df = pd.concat(pareto, ignore_index=True) if pareto else pd.DataFrame()
    if not pareto_df.empty:
        pareto_df = pareto_df[["law", "strategy", "method", "model", "config", "param_name",
                               "param", "cost_eflops", "accuracy"]]
    return Analysis(options, frontiers, frontier_table(frontiers, hardware), pareto_df,
                    float(intensity), means)


def best_of_n_table(analysis: Analysis) -> pd.DataFrame:
    """The Best-of-N options averaged over queries (``best_of_n.csv``): per (model,
    method, config, n) the coverage, majority-vote accuracy, compute FLOPs and memory
    bytes, in the options' order."""
    return (analysis.options["best_of_n"].groupby(["model", "method", "config", "n"], sort=False)
            [["coverage", "majority", "compute_flops", "memory_bytes"]].mean().reset_index())


def long_cot_table(analysis: Analysis) -> pd.DataFrame:
    """The long-CoT options averaged over queries (``long_cot.csv``): per (model,
    method, config, generation budget) the accuracy, compute FLOPs and memory bytes."""
    return (analysis.options["long_cot"].groupby(["model", "method", "config", "gen_budget"],
                                                 sort=False)
            [["accuracy", "compute_flops", "memory_bytes"]].mean().reset_index())


@dataclass(frozen=True)
class SummaryEntry:
    """One frontier number of summary.json: law, strategy, method family, budget
    (eFLOPs), the single-choice frontier accuracy (fraction) and its model and config."""

    law: str
    strategy: str
    method: str
    budget_eflops: float
    accuracy: float
    optimal_model: str | None
    config: str | None


@dataclass(frozen=True)
class Summary:
    """The regression-gate payload; :meth:`to_json` is summary.json (schema 1).
    ``settings`` are the cost settings it was priced with (kv_dtype, weight_dtype and
    batch_size in the JSON; a summary without them was priced with the defaults)."""

    synthetic: bool
    trials_source: str
    intensity: float
    hardware: str | None
    param_count: str
    entries: tuple[SummaryEntry, ...]
    settings: CostSettings = DEFAULT_SETTINGS

    def to_json(self) -> dict:
        """The summary.json object (what ``kinetics check`` reads)."""
        return {"schema": SCHEMA_VERSION, "synthetic": self.synthetic,
                "trials_source": self.trials_source, "intensity": self.intensity,
                "hardware": self.hardware, "param_count": self.param_count,
                **asdict(self.settings),
                "entries": [asdict(e) for e in self.entries]}


def summary_entries(frontiers: Mapping[tuple[str, str, str], Frontier]) -> tuple[SummaryEntry, ...]:
    """summary.json entries from frontiers evaluated at the summary budgets."""
    return tuple(
        SummaryEntry(law, strategy, method, float(budget), round(float(f.accuracy[g]), 10),
                     None if f.optimal_model[g] is None else str(f.optimal_model[g]),
                     None if f.config[g] is None else str(f.config[g]))
        for (law, strategy, method), f in frontiers.items() for g, budget in enumerate(f.budgets))


def build_summary(trials: pd.DataFrame, intensity: float, *, hardware: str | None,
                  synthetic: bool, source: str,
                  model_configs: Mapping[str, str] | None = None,
                  param_count: str = "published",
                  options: Mapping[str, pd.DataFrame] | None = None,
                  models: Mapping[str, ModelSpec] | None = None,
                  settings: CostSettings = DEFAULT_SETTINGS) -> Summary:
    """The summary of a validated trial table (summary.json via :meth:`Summary.to_json`).

    Entries: for each law (kinetics, flops), strategy (best_of_n, long_cot) and
    method present, at each of SUMMARY_BUDGETS (eFLOPs): the single-choice frontier
    accuracy, the optimal model and its config; never smoothed. ``param_count``
    ('published' or 'derived') prices the models, ``settings`` the bytes; ``options``
    may pass precomputed strategy tables (from :func:`strategy_options`, same
    ``param_count`` and ``settings``) to skip
    recomputing them, and ``models`` the specs already resolved from ``model_configs``
    (same ``param_count``) to skip reading the configs again.
    """
    if models is None:
        models = resolve_models(trials, model_configs, source, param_count)
    if options is None:
        options = strategy_options(trials, models, majority=False, settings=settings)
    frontiers = _frontiers(options, models, intensity,
                           lambda _s: np.asarray(SUMMARY_BUDGETS), SUMMARY_STRATEGIES)
    return Summary(bool(synthetic), str(source), float(intensity), hardware, param_count,
                   summary_entries(frontiers), settings)
