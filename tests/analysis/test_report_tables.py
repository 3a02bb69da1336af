"""The per-option tables of a report (best_of_n.csv, long_cot.csv): query means."""

from __future__ import annotations

import pandas as pd
import pytest

from kinetics.analysis.report import Analysis, best_of_n_table, long_cot_table


def _analysis() -> Analysis:
    bon = pd.DataFrame({"query_id": [1, 2, 1, 2], "model": ["b", "b", "a", "a"],
                        "method": "dense", "config": "-", "n": [1, 1, 2, 2],
                        "coverage": [0.0, 1.0, 0.5, 1.0], "majority": [0.0, 1.0, 0.0, 0.0],
                        "compute_flops": [1.0, 3.0, 2.0, 2.0], "memory_bytes": [4.0, 0.0, 1, 1],
                        "extra": 9})
    lc = pd.DataFrame({"query_id": [1, 2], "model": "a", "method": "blocktopk",
                       "config": "k64", "gen_budget": 2048, "accuracy": [1.0, 0.0],
                       "compute_flops": [1.0, 2.0], "memory_bytes": [3.0, 5.0]})
    return Analysis({"best_of_n": bon, "long_cot": lc}, {}, pd.DataFrame(), pd.DataFrame(), 1.0,
                    means={})


def test_best_of_n_table_means_over_queries_in_option_order():
    table = best_of_n_table(_analysis())
    assert list(table.columns) == ["model", "method", "config", "n", "coverage", "majority",
                                   "compute_flops", "memory_bytes"]
    assert list(table["model"]) == ["b", "a"]  # first seen first, not sorted
    assert table.iloc[0][["coverage", "compute_flops", "memory_bytes"]].tolist() == [
        0.5, 2.0, 2.0]
    assert table.iloc[1]["coverage"] == pytest.approx(0.75)


def test_long_cot_table_means_over_queries():
    (row,) = long_cot_table(_analysis()).to_dict("records")
    assert row == {"model": "a", "method": "blocktopk", "config": "k64", "gen_budget": 2048,
                   "accuracy": 0.5, "compute_flops": 1.5, "memory_bytes": 4.0}
