"""The embedded synthetic set: reproducible from the script, calibrated as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kinetics.analysis.synthetic import (
    AIME24_ACCURACY,
    DEFAULT_SEED,
    generate_trials,
    replicate_queries,
)
from kinetics.analysis.trials import embedded_path, load_trials, validate_trials


def test_packaged_file_is_what_the_script_generates():
    trials, synthetic = load_trials(None)
    again = validate_trials(generate_trials(DEFAULT_SEED))
    pd.testing.assert_frame_equal(trials, again, check_dtype=False)
    assert synthetic and embedded_path().stat().st_size < 2_000_000


def test_shape_calibration_and_documented_trends():
    trials = validate_trials(generate_trials(DEFAULT_SEED))
    assert trials["query_id"].nunique() == 30
    dense = trials[trials["method"] == "dense"]
    accuracy = dense.groupby("model")["correct"].mean()
    for model, target in AIME24_ACCURACY.items():
        assert abs(accuracy[model] - target) < 0.05, model
    assert trials["gen_len"].max() <= 32768
    # wrong answers are longer; smaller models think longer
    median = dense.groupby(["model", "correct"])["gen_len"].median().unstack()
    assert (median[0] > median[1]).all()
    assert median.loc["qwen3-0.6b", 1] > median.loc["qwen3-32b", 1]
    # sparse: accuracy falls and traces lengthen as the budget shrinks
    by_budget = trials[trials["method"] == "topk"].groupby("budget")
    acc = by_budget["correct"].mean()
    assert acc.loc[128] < acc.loc[2048] < accuracy.mean() + 0.02
    assert by_budget["gen_len"].mean().loc[128] > dense["gen_len"].mean()
    # per-query difficulty varies, so coverage keeps growing with N
    per_query = dense[dense["model"] == "qwen3-8b"].groupby("query_id")["correct"].mean()
    assert per_query.std() > 0.2 and 0 < per_query.min() < 0.5
    # no answer exactly where the trace hit the cap
    capped = trials["gen_len"] == 32768
    assert trials.loc[capped, "answer_pos"].isna().all()
    assert (trials.loc[capped, "correct"] == 0).all()
    assert np.all(trials["answer_pos"].dropna() <= trials.loc[trials["answer_pos"].notna(),
                                                              "gen_len"])


def test_seed_changes_the_draw_only():
    a, b = generate_trials(1), generate_trials(2)
    assert a.shape == b.shape and not a["gen_len"].equals(b["gen_len"])


def test_replicated_queries_keep_each_query_and_multiply_the_table():
    trials, _ = load_trials(None)
    small = trials[trials["model"] == "qwen3-0.6b"].head(100)
    big = replicate_queries(small, 3)
    assert len(big) == 300
    assert big["query_id"].nunique() == 3 * small["query_id"].nunique()
    for i in range(3):
        copy = big.iloc[100 * i: 100 * (i + 1)]
        assert copy["query_id"].tolist() == (small["query_id"] + f"-c{i}").tolist()
        pd.testing.assert_frame_equal(copy.drop(columns="query_id").reset_index(drop=True),
                                      small.drop(columns="query_id").reset_index(drop=True))
