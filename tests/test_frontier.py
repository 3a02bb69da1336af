"""Frontier properties (hypothesis) against brute force over options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinetics.cost import AttentionConfig
from kinetics.frontier import (
    budget_grid,
    compute_frontier,
    frontier_table,
    law_intensity,
    option_cost,
    pareto_points,
)
from kinetics.models import MODELS
from kinetics.strategies import best_of_n, long_cot
from kinetics.synthetic import SyntheticSpec, generate_trials
from kinetics.traces import validate_trials

MODEL_NAMES = ["qwen3-0.6b", "qwen3-4b", "qwen3-14b"]


@st.composite
def option_tables(draw):
    """Random options: per query, (model, config, param) rows with cost and accuracy."""
    n = draw(st.integers(1, 40))
    floats = st.floats(1e12, 1e17, allow_nan=False)
    return pd.DataFrame({
        "model": draw(st.lists(st.sampled_from(MODEL_NAMES), min_size=n, max_size=n)),
        "method": "dense",
        "config": draw(st.lists(st.sampled_from(["dense", "topk64"]), min_size=n, max_size=n)),
        "query_id": draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n)),
        "n": draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)),
        "accuracy": draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)),
        "compute_flops": draw(st.lists(floats, min_size=n, max_size=n)),
        "memory_bytes": draw(st.lists(st.floats(0, 1e14), min_size=n, max_size=n)),
    })


budget_lists = st.lists(st.floats(1e11, 1e18, allow_nan=False), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(option_tables(), budget_lists, st.floats(0, 1000))
def test_frontier_is_monotone_and_every_point_is_achievable(options, budgets, intensity):
    f = compute_frontier(options, budgets, intensity, model_specs=MODELS)
    order = np.argsort(f.budgets)
    assert np.all(np.diff(f.accuracy[order]) >= -1e-12)
    cost = option_cost(options, intensity)
    for q_index, query in enumerate(f.queries):
        mine = options["query_id"].to_numpy() == query
        for g, budget in enumerate(f.budgets):
            fits = mine & (cost <= budget)
            want = options["accuracy"].to_numpy()[fits].max() if fits.any() else -1.0
            assert f.per_query[q_index, g] == want  # achieved by a real option row
    want_mean = np.clip(f.per_query, 0, None).mean(axis=0)
    np.testing.assert_allclose(f.accuracy, want_mean)
    for g in range(len(f.budgets)):
        fit_any = (cost <= f.budgets[g]).any()
        assert (f.optimal_model[g] is not None) == fit_any
        if fit_any:
            best = f.model_accuracy[:, g].max()
            m = f.models.index(f.optimal_model[g])
            assert f.model_accuracy[m, g] == best
            assert f.config[g] in set(options.loc[options["model"] == f.optimal_model[g], "config"])


@settings(max_examples=60, deadline=None)
@given(option_tables(), st.floats(0, 1000))
def test_pareto_points_are_non_dominated(options, intensity):
    points = pareto_points(options, intensity, param="n")
    agg = (options.assign(c=option_cost(options, intensity)).groupby(["model", "config", "n"])
           .agg(c=("c", "mean"), a=("accuracy", "mean")))
    assert np.all(np.diff(points["cost_eflops"]) >= 0)
    assert np.all(np.diff(points["accuracy"]) > 0)
    for p in points.itertuples():
        dominated = (agg["c"] <= p.cost_eflops) & (agg["a"] > p.accuracy + 1e-12)
        assert not dominated.any()
    if len(agg):
        assert points["accuracy"].max() == pytest.approx(agg["a"].max())


@st.composite
def small_trials(draw):
    spec = SyntheticSpec(
        accuracy={"qwen3-0.6b": draw(st.floats(0.05, 0.9)), "qwen3-8b": draw(st.floats(0.05, 0.9))},
        num_queries=draw(st.integers(1, 4)), default_trials=draw(st.integers(1, 5)),
        configs=(AttentionConfig.dense(), AttentionConfig.topk(256),
                 AttentionConfig.blocktopk(16, topk_blocks=8)),
        max_len=draw(st.integers(700, 6000)))
    return validate_trials(generate_trials(draw(st.integers(0, 2**31)), spec))


@settings(max_examples=25, deadline=None)
@given(small_trials(), st.floats(0, 2000))
def test_flops_law_never_prices_an_option_above_the_kinetics_law(trials, intensity):
    for options in (best_of_n(trials, MODELS, majority=False), long_cot(trials, MODELS)):
        kinetics = option_cost(options, law_intensity("kinetics", intensity))
        flops = option_cost(options, law_intensity("flops", intensity))
        assert np.all(flops <= kinetics)
        assert np.all(flops > 0)
        grid = budget_grid(1e12, 1e17, 30)
        for metric in ("coverage", "accuracy"):
            if metric not in options:
                continue
            a = compute_frontier(options, grid, law_intensity("kinetics", intensity), metric=metric)
            b = compute_frontier(options, grid, law_intensity("flops", intensity), metric=metric)
            assert np.all(b.accuracy >= a.accuracy - 1e-12)  # cheaper prices, same options


def test_frontier_table_columns_and_ties_go_to_the_smaller_model():
    options = pd.DataFrame({
        "model": ["qwen3-14b", "qwen3-0.6b"], "method": "dense", "config": "dense",
        "query_id": "q", "n": 1, "accuracy": [1.0, 1.0], "compute_flops": [1e13, 1e13],
        "memory_bytes": [0.0, 0.0]})
    f = compute_frontier(options, [1e12, 1e14], 562.5, model_specs=MODELS)
    assert list(f.optimal_model) == [None, "qwen3-0.6b"]
    table = frontier_table({("kinetics", "best_of_n", "dense"): f})
    for column in ("law", "strategy", "method", "budget_eflops", "accuracy", "model", "config",
                   "b200_seconds"):
        assert column in table
    assert table["accuracy"].tolist() == [0.0, 1.0]
