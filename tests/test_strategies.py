"""Best-of-N and long-CoT against brute force over subsets (hypothesis)."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinetics.cost import AttentionConfig, sample_cost, shared_cost
from kinetics.models import MODELS
from kinetics.strategies import best_of_n, long_cot, max_order_weights, pass_at_n
from kinetics.traces import validate_trials

CONFIGS = [AttentionConfig.dense(), AttentionConfig.topk(64),
           AttentionConfig.blocktopk(16, topk_blocks=2, local=8)]


def table(model: str, attention: AttentionConfig, prompt: int, lengths, correct,
          answers=None, answer_pos=None) -> pd.DataFrame:
    """A validated one-query trial table."""
    n = len(lengths)
    frame = pd.DataFrame({
        "model": model, "method": attention.method,
        "budget": [attention.budget] * n, "block_size": [attention.block_size] * n,
        "local": [attention.local if attention.method == "blocktopk" else None] * n,
        "query_id": "q", "trial": range(n), "prompt_len": prompt, "gen_len": lengths,
        "correct": correct,
        "answer_pos": answer_pos if answer_pos is not None else [None] * n,
    })
    if answers is not None:
        frame["answer"] = answers
    return validate_trials(frame, "test")


@st.composite
def query_samples(draw, max_n=7):
    n = draw(st.integers(1, max_n))
    lengths = draw(st.lists(st.integers(0, 3000), min_size=n, max_size=n))
    correct = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return lengths, correct


@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_pass_at_n_equals_subset_average_and_grows(nc):
    n, c = nc
    outcomes = [1] * c + [0] * (n - c)
    values = pass_at_n(np.full(n, n), np.full(n, c), np.arange(1, n + 1))
    for num in range(1, n + 1):
        subsets = list(itertools.combinations(outcomes, num))
        assert values[num - 1] == pytest.approx(np.mean([max(s) for s in subsets]), abs=1e-12)
    assert np.all(np.diff(values) >= -1e-12)


@given(st.integers(1, 10).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))))
def test_max_order_weights_are_the_subset_max_distribution(nn):
    n, num = nn
    weights = max_order_weights(n, np.arange(1, n + 1), num)
    counts = Counter(max(s) for s in itertools.combinations(range(1, n + 1), num))
    brute = np.array([counts[j] for j in range(1, n + 1)]) / math.comb(n, num)
    np.testing.assert_allclose(weights, brute, atol=1e-12)
    assert weights.sum() == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(query_samples(), st.sampled_from(CONFIGS), st.integers(0, 300),
       st.sampled_from(["qwen3-0.6b", "qwen3-8b"]))
def test_best_of_n_cost_and_coverage_equal_brute_force(samples, attention, prompt, model_name):
    lengths, correct = samples
    model = MODELS[model_name]
    out = best_of_n(table(model_name, attention, prompt, lengths, correct), MODELS,
                    majority_draws=0).sort_values("n")
    n = len(lengths)
    assert list(out["n"]) == list(range(1, n + 1))
    for num, row in zip(range(1, n + 1), out.itertuples(), strict=True):
        compute, memory, cover = [], [], []
        for subset in itertools.combinations(range(n), num):
            ts = [lengths[i] for i in subset]
            priv = sample_cost(model, attention, prompt, np.array(ts))
            shared = shared_cost(model, attention, prompt, max(ts))
            compute.append(priv.compute_flops.sum() + float(shared.compute_flops))
            memory.append(priv.memory_bytes.sum() + float(shared.memory_bytes))
            cover.append(max(correct[i] for i in subset))
        assert row.compute_flops == pytest.approx(np.mean(compute), rel=1e-9)
        assert row.memory_bytes == pytest.approx(np.mean(memory), rel=1e-9)
        assert row.coverage == pytest.approx(np.mean(cover), abs=1e-12)


def test_majority_vote_matches_subset_enumeration_on_a_small_case():
    answers = ["7", "7", "3", "3", "3", "5"]
    correct = [1, 1, 0, 0, 0, 0]
    out = best_of_n(table("qwen3-0.6b", CONFIGS[0], 10, [100] * 6, correct, answers), MODELS,
                    majority_draws=4000, seed=1).sort_values("n")
    for num in (1, 2, 3, 6):
        # exact expectation over ordered draws with "first to reach the count" ties
        wins = []
        for perm in itertools.permutations(range(6), num):
            votes: Counter = Counter()
            leader, best = None, 0
            for i in perm:
                votes[answers[i]] += 1
                if votes[answers[i]] > best:
                    leader, best = answers[i], votes[answers[i]]
            wins.append(leader == "7")
        assert out["majority"].iloc[num - 1] == pytest.approx(np.mean(wins), abs=0.03)
    assert out["majority"].iloc[-1] == 0.0  # "3" wins with 3 of 6 votes


def test_majority_is_nan_without_answers_and_one_when_unanimous():
    out = best_of_n(table("qwen3-0.6b", CONFIGS[0], 10, [50, 60], [1, 1]), MODELS)
    assert out["majority"].isna().all()
    out = best_of_n(table("qwen3-0.6b", CONFIGS[0], 10, [50, 60], [1, 1], ["4", "4"]), MODELS)
    assert (out["majority"] == 1.0).all()


@settings(max_examples=40, deadline=None)
@given(query_samples(), st.sampled_from(CONFIGS),
       st.lists(st.integers(1, 3500), min_size=1, max_size=6, unique=True), st.data())
def test_long_cot_accuracy_grows_with_budget_and_costs_clip(samples, attention, budgets, data):
    lengths, correct = samples
    pos = [data.draw(st.one_of(st.none(), st.integers(0, t))) for t in lengths]
    pos = [None if p is None and c == 0 else p for p, c in zip(pos, correct, strict=True)]
    trials = table("qwen3-1.7b", attention, 40, lengths, correct, answer_pos=pos)
    out = long_cot(trials, MODELS, budgets).sort_values("gen_budget")
    assert np.all(np.diff(out["accuracy"].to_numpy()) >= 0)
    filled = trials["answer_pos"].to_numpy(dtype=float, na_value=np.inf)
    model = MODELS["qwen3-1.7b"]
    for row in out.itertuples():
        clipped = np.minimum(lengths, row.gen_budget)
        want = np.mean([(c == 1) and p <= row.gen_budget for c, p in
                        zip(correct, filled, strict=True)])
        assert row.accuracy == pytest.approx(want)
        cost = sample_cost(model, attention, 40, clipped) + shared_cost(model, attention, 40, clipped)
        assert row.compute_flops == pytest.approx(cost.compute_flops.mean(), rel=1e-12)
        assert row.memory_bytes == pytest.approx(cost.memory_bytes.mean(), rel=1e-12)
