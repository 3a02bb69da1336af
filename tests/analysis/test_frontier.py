"""Frontier properties (hypothesis) against brute force over options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinetics.analysis.frontier import (
    GRID_POINTS,
    best_per_query,
    budget_grid,
    compute_frontier,
    frontier_table,
    law_intensity,
    moving_average,
    option_cost,
    option_means,
    pareto_front,
    pareto_points,
)
from kinetics.analysis.strategies import best_of_n, long_cot
from kinetics.analysis.synthetic import SyntheticSpec, generate_trials
from kinetics.analysis.trials import validate_trials
from kinetics.cost import AttentionConfig
from kinetics.errors import InputError
from kinetics.hardware import HARDWARE
from kinetics.models import MODELS

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


def brute_frontier(options: pd.DataFrame, budget: float, intensity: float):
    """(single-choice accuracy, model, config, per-query oracle, {model: own best}) at
    one budget, by loops over (model, config) pairs and queries."""
    cost = option_cost(options, intensity)
    queries = list(pd.unique(options["query_id"]))
    fits = options[cost <= budget]
    pairs = sorted({(MODELS[m].active_params, c, m) for m, c in
                    zip(options["model"], options["config"], strict=True)})
    best, choice, own = -1.0, (None, None), {}
    for _, config, model in pairs:
        mine = fits[(fits["model"] == model) & (fits["config"] == config)]
        if mine.empty:
            continue
        value = sum(mine.loc[mine["query_id"] == q, "accuracy"].max() if (mine["query_id"] == q)
                    .any() else 0.0 for q in queries) / len(queries)
        own[model] = max(own.get(model, -1.0), value)
        if value > best:
            best, choice = value, (model, config)
    oracle = sum(fits.loc[fits["query_id"] == q, "accuracy"].max() if (fits["query_id"] == q)
                 .any() else 0.0 for q in queries) / len(queries)
    return max(best, 0.0), choice[0], choice[1], oracle, own


@settings(max_examples=60, deadline=None)
@given(option_tables(), budget_lists, st.floats(0, 1000))
def test_frontier_equals_brute_force_single_choice_and_oracle(options, budgets, intensity):
    f = compute_frontier(options, budgets, intensity, model_specs=MODELS)
    order = np.argsort(f.budgets)
    assert np.all(np.diff(f.accuracy[order]) >= -1e-12)
    assert np.all(f.per_query_oracle_accuracy >= f.accuracy - 1e-12)
    for g, budget in enumerate(f.budgets):
        accuracy, model, config, oracle, own = brute_frontier(options, budget, intensity)
        assert f.accuracy[g] == pytest.approx(accuracy, abs=1e-12)
        assert f.per_query_oracle_accuracy[g] == pytest.approx(oracle, abs=1e-12)
        assert (f.optimal_model[g], f.config[g]) == (model, config)
        for m, name in enumerate(f.models):
            assert f.model_fits[m, g] == (name in own)
            assert f.model_accuracy[m, g] == pytest.approx(own.get(name, 0.0), abs=1e-12)


# A fixed options table (2 queries) whose frontier is worked out by hand under both
# laws at I = 100: kinetics cost = compute + 100 x memory, FLOPs cost = compute.
#   option              kinetics cost    FLOPs cost   accuracy q1, q2 (mean)
#   0.6B N=1            2e13             1e13         0.2, 0.8  (0.5)
#   0.6B N=2            4e13             2e13         0.3, 0.9  (0.6)
#   0.6B N=3            6e13             3e13         0.35, 0.95 (0.65)
#   14B  N=1  q1        4.1e13           4e13         1.0
#   14B  N=1  q2        4.6e13           4.5e13       0.8       (0.9)
FIXED = pd.DataFrame({
    "model": ["qwen3-0.6b"] * 6 + ["qwen3-14b"] * 2, "method": "dense", "config": "dense",
    "query_id": ["q1", "q2"] * 4, "n": [1, 1, 2, 2, 3, 3, 1, 1],
    "accuracy": [0.2, 0.8, 0.3, 0.9, 0.35, 0.95, 1.0, 0.8],
    "compute_flops": [1e13, 1e13, 2e13, 2e13, 3e13, 3e13, 4e13, 4.5e13],
    "memory_bytes": [1e11, 1e11, 2e11, 2e11, 3e11, 3e11, 1e10, 1e10],
})
FIXED_BUDGETS = [1.5e13, 3e13, 4.05e13, 4.2e13, 4.55e13, 5e13]
S, B = "qwen3-0.6b", "qwen3-14b"
FIXED_WANT = {  # law -> (accuracy, optimal model, per-query oracle, 14B's own frontier)
    "kinetics": ([0, 0.5, 0.6, 0.6, 0.6, 0.9], [None, S, S, S, S, B],
                 [0, 0.5, 0.6, 0.95, 0.95, 0.95], [0, 0, 0, 0.5, 0.5, 0.9]),
    "flops": ([0.5, 0.65, 0.65, 0.65, 0.9, 0.9], [S, S, S, S, B, B],
              [0.5, 0.65, 0.975, 0.975, 0.975, 0.975], [0, 0, 0.5, 0.5, 0.9, 0.9]),
}
FIXED_PER_QUERY = {  # law -> each query's best option over all models (-1: nothing fits)
    "kinetics": [[-1, 0.2, 0.3, 1.0, 1.0, 1.0], [-1, 0.8, 0.9, 0.9, 0.9, 0.9]],
    "flops": [[0.2, 0.35, 1.0, 1.0, 1.0, 1.0], [0.8, 0.95, 0.95, 0.95, 0.95, 0.95]],
}


@pytest.mark.parametrize("law", ["kinetics", "flops"])
def test_fixed_table_frontier_and_optimal_model_under_each_law(law):
    f = compute_frontier(FIXED, FIXED_BUDGETS, law_intensity(law, 100.0), model_specs=MODELS)
    accuracy, model, oracle, big = FIXED_WANT[law]
    np.testing.assert_allclose(f.accuracy, accuracy, atol=1e-12)
    assert list(f.optimal_model) == model
    assert list(f.config) == [None if m is None else "dense" for m in model]
    np.testing.assert_allclose(f.per_query_oracle_accuracy, oracle, atol=1e-12)
    assert f.models == [S, B]
    np.testing.assert_allclose(f.model_accuracy[1], big, atol=1e-12)
    assert f.queries.tolist() == ["q1", "q2"]
    np.testing.assert_allclose(f.per_query, FIXED_PER_QUERY[law], atol=1e-12)
    assert "h100_seconds" not in frontier_table({(law, "best_of_n", "dense"): f})
    table = frontier_table({(law, "best_of_n", "dense"): f}, HARDWARE["h100"])
    assert table.columns.tolist() == ["law", "strategy", "method", "budget_eflops",
                                      "h100_seconds", "accuracy", "model", "config",
                                      "per_query_oracle_accuracy"]
    np.testing.assert_allclose(table["accuracy"], accuracy, atol=1e-12)
    np.testing.assert_allclose(table["per_query_oracle_accuracy"], oracle, atol=1e-12)
    np.testing.assert_allclose(table["h100_seconds"], np.array(FIXED_BUDGETS) / 989.5e12,
                               rtol=1e-15)
    fp8 = frontier_table({(law, "best_of_n", "dense"): f}, HARDWARE["b200-fp8"])
    np.testing.assert_allclose(fp8["b200_fp8_seconds"], np.array(FIXED_BUDGETS) / 4.5e15,
                               rtol=1e-15)
    assert [None if pd.isna(m) else m for m in table["model"]] == model


@pytest.mark.parametrize("law, want", [
    ("kinetics", [(S, 1, 2e13, 0.5), (S, 2, 4e13, 0.6), (B, 1, 4.35e13, 0.9)]),
    ("flops", [(S, 1, 1e13, 0.5), (S, 2, 2e13, 0.6), (S, 3, 3e13, 0.65), (B, 1, 4.25e13, 0.9)]),
])
def test_fixed_table_pareto_set_under_each_law(law, want):
    points = pareto_points(FIXED, law_intensity(law, 100.0), param="n")
    got = list(zip(points["model"], points["n"], points["cost_eflops"], points["accuracy"],
                   strict=True))
    assert [(m, n) for m, n, _, _ in got] == [(m, n) for m, n, _, _ in want]
    np.testing.assert_allclose([c for *_, c, _ in got], [c for *_, c, _ in want], rtol=1e-12)
    np.testing.assert_allclose([a for *_, a in got], [a for *_, a in want], atol=1e-12)


def test_one_config_serves_every_query():
    # config A solves q1 only, B solves q2 only: one choice scores 0.5, an oracle 1.0
    options = pd.DataFrame({
        "model": "qwen3-8b", "method": "topk", "config": ["topkA", "topkA", "topkB", "topkB"],
        "query_id": ["q1", "q2", "q1", "q2"], "n": 1, "accuracy": [1.0, 0.0, 0.0, 1.0],
        "compute_flops": 1e13, "memory_bytes": 0.0})
    f = compute_frontier(options, [1e14], 562.5, model_specs=MODELS)
    assert f.accuracy.tolist() == [0.5] and f.per_query_oracle_accuracy.tolist() == [1.0]
    assert f.config.tolist() == ["topkA"] and f.model_accuracy.tolist() == [[0.5]]


def test_moving_average_is_centred_and_zero_where_nothing_fits():
    values = np.array([0.0, 0.3, 0.6, 0.9, 0.9])
    fits = np.array([False, True, True, True, True])
    np.testing.assert_allclose(moving_average(values, fits, 3), [0, 0.3, 0.6, 0.8, 0.9])
    assert moving_average(values, fits, 1).tolist() == values.tolist()
    # width 5: two neighbours each side, the window cut at the ends
    np.testing.assert_allclose(moving_average(values, fits, 5),
                               [0, 1.8 / 4, 2.7 / 5, 2.7 / 4, 2.4 / 3])
    with pytest.raises(InputError):
        moving_average(values, fits, 2)


def test_smoothed_frontier_keeps_the_choices():
    f = compute_frontier(FIXED, FIXED_BUDGETS, 100.0, model_specs=MODELS)
    smooth = f.smoothed(3)
    # accuracy [0, .5, .6, .6, .6, .9]; nothing fits at the first budget
    np.testing.assert_allclose(smooth.accuracy, [0, 1.1 / 3, 1.7 / 3, 1.8 / 3, 2.1 / 3, 1.5 / 2],
                               atol=1e-12)
    assert smooth.optimal_model.tolist() == f.optimal_model.tolist()
    # the oracle [0, .5, .6, .95, .95, .95] is smoothed the same way
    np.testing.assert_allclose(smooth.per_query_oracle_accuracy,
                               [0, 1.1 / 3, 2.05 / 3, 2.5 / 3, 2.85 / 3, 0.95], atol=1e-12)
    # 14B's own curve [0, 0, 0, .5, .5, .9]: nothing of it fits at the first three budgets
    np.testing.assert_allclose(smooth.model_accuracy[1], [0, 0, 0, 1 / 3, 1.9 / 3, 0.7],
                               atol=1e-12)
    assert f.smoothed(1) is f


def test_pareto_keeps_the_more_accurate_of_equal_costs_and_drops_equal_accuracy():
    # (cost, accuracy): A (1, 0.5), B (1, 0.7) at the same cost, C (2, 0.7) no better
    # than B, D (3, 0.9): the Pareto set is B, D
    options = pd.DataFrame({
        "model": "qwen3-8b", "method": "dense", "config": "dense", "query_id": "q",
        "n": [1, 2, 3, 4], "accuracy": [0.5, 0.7, 0.7, 0.9],
        "compute_flops": [1.0, 1.0, 2.0, 3.0], "memory_bytes": 0.0})
    points = pareto_points(options, 100.0, param="n")
    assert points.columns.tolist() == ["model", "config", "n", "cost_eflops", "accuracy"]
    assert points["n"].tolist() == [2, 4]
    assert points["cost_eflops"].tolist() == [1.0, 3.0]


def test_a_metric_missing_everywhere_gives_a_frontier_where_nothing_fits():
    # e.g. majority vote over a table without answers: every value NaN
    options = FIXED.assign(majority=np.nan)
    f = compute_frontier(options, FIXED_BUDGETS, 100.0, metric="majority", model_specs=MODELS)
    assert f.accuracy.tolist() == [0.0] * 6 and f.per_query_oracle_accuracy.tolist() == [0.0] * 6
    assert f.optimal_model.tolist() == [None] * 6 and f.config.tolist() == [None] * 6
    assert f.models == [] and f.model_accuracy.shape == (0, 6) and not f.fits.any()


def test_frontier_table_of_no_frontiers_is_empty():
    assert frontier_table({}).empty


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


def test_ties_go_to_the_smaller_model_not_the_first_name():
    # "qwen3-14b" sorts before "qwen3-4b" as a string; the 4B has fewer parameters
    options = pd.DataFrame({
        "model": ["qwen3-14b", "qwen3-4b"], "method": "dense", "config": "dense",
        "query_id": "q", "n": 1, "accuracy": [1.0, 1.0], "compute_flops": [1e13, 1e13],
        "memory_bytes": [0.0, 0.0]})
    f = compute_frontier(options, [1e12, 1e14], 562.5, model_specs=MODELS)
    assert list(f.optimal_model) == [None, "qwen3-4b"]
    assert f.accuracy.tolist() == [0.0, 1.0]


def test_budget_grid_is_log_spaced_between_its_ends():
    np.testing.assert_allclose(budget_grid(1e12, 1e16, 5), [1e12, 1e13, 1e14, 1e15, 1e16])
    grid = budget_grid(45e12, 4e16)
    assert len(grid) == GRID_POINTS == 100
    assert grid[0] == pytest.approx(45e12) and grid[-1] == pytest.approx(4e16)


def test_best_per_query_is_minus_one_where_nothing_fits_and_the_best_that_fits_elsewhere():
    # unit 0, query 0: options costing 1 and 3 (accuracy 0.2, 0.7); query 1: one at 2 (0.5)
    cost, accuracy = np.array([1.0, 3.0, 2.0]), np.array([0.2, 0.7, 0.5])
    got = best_per_query(cost, accuracy, np.array([0, 0, 1]), np.array([0, 0, 0]), 2, 1,
                         np.array([3.0, 0.5, 2.0]))  # unsorted budgets, one exactly a cost
    np.testing.assert_array_equal(got, [[[0.7, -1.0, 0.2], [0.5, -1.0, 0.5]]])


def test_option_means_average_over_queries_and_count_them():
    options = pd.DataFrame({
        "model": "qwen3-8b", "method": ["dense", "dense", "dense", "topk"],
        "config": ["dense", "dense", "dense", "topk64"], "query_id": ["q1", "q2", "q3", "q1"],
        "n": 1, "coverage": [1.0, 0.0, np.nan, 0.5],
        "compute_flops": [1.0, 3.0, 5.0, 7.0], "memory_bytes": [2.0, 4.0, 6.0, 8.0]})
    means = option_means(options, param="n", metric="coverage", by=["method"])
    assert means.columns.tolist() == ["method", "model", "config", "n", "compute_flops",
                                      "memory_bytes", "accuracy", "queries"]
    dense = means[means["method"] == "dense"].iloc[0]
    assert (dense["compute_flops"], dense["memory_bytes"]) == (3.0, 4.0)  # all three rows
    assert (dense["accuracy"], dense["queries"]) == (0.5, 2)  # the NaN neither counts nor scores
    assert means[means["method"] == "topk"]["queries"].tolist() == [1]
    all_nan = option_means(options.assign(coverage=np.nan), param="n", metric="coverage")
    assert all_nan.empty  # no accuracy anywhere: no option
    renamed = option_means(options.rename(columns={"coverage": "accuracy"}), param="n",
                           by=["method"])  # the default metric is "accuracy"
    pd.testing.assert_frame_equal(renamed, means)


def test_pareto_points_of_another_metric_and_pareto_front_of_means():
    options = pd.DataFrame({
        "model": "qwen3-8b", "method": "dense", "config": "dense", "query_id": "q",
        "n": [1, 2, 3], "coverage": [0.2, 0.6, 0.9], "accuracy": [0.9, 0.1, 0.1],
        "compute_flops": [1.0, 2.0, 3.0], "memory_bytes": [1.0, 1.0, 1.0]})
    points = pareto_points(options, 10.0, param="n", metric="coverage")
    assert points["n"].tolist() == [1, 2, 3]
    assert points["cost_eflops"].tolist() == [11.0, 12.0, 13.0]
    front = pareto_front(option_means(options, param="n", metric="coverage"), 10.0)
    pd.testing.assert_frame_equal(front, points)
