"""Best-of-N and long-CoT against brute force over subsets (hypothesis)."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kinetics.analysis import strategies
from kinetics.analysis.strategies import (
    best_of_n,
    long_cot,
    majority_win_probability,
    max_order_weights,
    pass_at_n,
)
from kinetics.analysis.trials import validate_trials
from kinetics.cost import AttentionConfig, sample_cost, shared_cost
from kinetics.models import MODELS

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
                    majority=False).sort_values("n")
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


def brute_majority(answers, correct, num) -> Fraction:
    """Mean over all num-subsets (and all tie outcomes) of the vote's correctness, with
    a class scored by the fraction of its samples that are correct; None abstains."""
    right = {a: Fraction(sum(c for b, c in zip(answers, correct, strict=True) if b == a),
                         answers.count(a)) for a in set(answers) if a is not None}
    total = Fraction(0)
    subsets = list(itertools.combinations(range(len(answers)), num))
    for subset in subsets:
        votes = Counter(answers[i] for i in subset if answers[i] is not None)
        if votes:
            top = max(votes.values())
            winners = [a for a, v in votes.items() if v == top]
            total += sum(right[a] for a in winners) / len(winners)
    return total / len(subsets)


def majority_of(answers, correct) -> np.ndarray:
    n = len(answers)
    out = best_of_n(table("qwen3-0.6b", CONFIGS[0], 10, [100] * n, correct, answers), MODELS)
    return out.sort_values("n")["majority"].to_numpy()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["1", "2", "3", "4", None]), min_size=1, max_size=9),
       st.sets(st.sampled_from(["1", "2"])))
def test_majority_vote_equals_enumeration_of_subsets_and_ties(answers, right_answers):
    assume(any(a is not None for a in answers))  # a table with no answers has no vote
    correct = [int(a in right_answers) for a in answers]
    got = majority_of(answers, correct)
    for num in range(1, len(answers) + 1):
        assert got[num - 1] == pytest.approx(float(brute_majority(answers, correct, num)),
                                              abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=4), st.integers(0, 4), st.data())
def test_win_probability_sums_to_the_chance_someone_votes(counts, abstain, data):
    assume(sum(counts) + abstain > 0)
    n = sum(counts) + abstain
    win = np.array([majority_win_probability(np.array([counts]), np.array([abstain]),
                                             np.array([k]))[0] for k in range(len(counts))])
    someone = [1 - math.comb(abstain, num) / math.comb(n, num) for num in range(1, n + 1)]
    np.testing.assert_allclose(win.sum(axis=0), someone, atol=1e-12)
    k = data.draw(st.integers(0, len(counts) - 1))
    np.testing.assert_array_less(-1e-15, win[k])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["1", "2", "3", None]), min_size=1, max_size=12))
def test_majority_at_one_is_pass_at_one(answers):
    assume(any(a is not None for a in answers))
    correct = [int(a == "1") for a in answers]
    out = best_of_n(table("qwen3-0.6b", CONFIGS[0], 10, [100] * len(answers), correct, answers),
                    MODELS)
    first = out[out["n"] == 1].iloc[0]
    assert first["majority"] == pytest.approx(first["coverage"], abs=1e-12)
    assert first["majority"] == pytest.approx(sum(correct) / len(answers), abs=1e-15)


def test_majority_abstainers_and_three_way_tie():
    assert majority_of(["42", None, None], [1, 0, 0])[2] == 1.0
    assert majority_of(["1", "2", "3"], [1, 0, 0])[2] == pytest.approx(1 / 3, abs=1e-15)
    # "3" holds 3 of 6 votes: it wins every full vote; "7" (2 votes) wins none
    assert majority_of(["7", "7", "3", "3", "3", "5"], [1, 1, 0, 0, 0, 0])[-1] == 0.0


def test_majority_votes_are_not_pooled_across_queries():
    one = table("qwen3-0.6b", CONFIGS[0], 10, [100] * 3, [1, 0, 0], ["9", "5", "5"])
    two = table("qwen3-0.6b", CONFIGS[0], 10, [100] * 3, [1, 1, 0], ["9", "9", "6"])
    two["query_id"] = "r"
    out = best_of_n(pd.concat([one, two], ignore_index=True), MODELS)
    full = out[out["n"] == 3].set_index("query_id")["majority"]
    assert full["q"] == 0.0 and full["r"] == 1.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=5),
                min_size=2, max_size=6),
       st.lists(st.sampled_from(["a", "b", "c"]), min_size=6, max_size=6))
def test_majority_of_many_queries_is_each_query_own_vote(queries, right_answers):
    """Every query's majority equals the brute-force vote over that query's samples alone
    (however the answer strings repeat across queries)."""
    assume(any(a is not None for answers in queries for a in answers))
    frames = []
    for i, answers in enumerate(queries):
        correct = [int(a == right_answers[i]) for a in answers]
        frame = table("qwen3-0.6b", CONFIGS[0], 10, [100] * len(answers), correct, answers)
        frames.append(frame.assign(query_id=f"q{i}"))
    out = best_of_n(pd.concat(frames, ignore_index=True), MODELS)
    fewest = min(len(answers) for answers in queries)  # N stops there for every query
    for i, answers in enumerate(queries):
        correct = [int(a == right_answers[i]) for a in answers]
        got = out[out["query_id"] == f"q{i}"].sort_values("n")["majority"].to_numpy()
        want = [float(brute_majority(answers, correct, num)) for num in range(1, fewest + 1)]
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_a_query_where_every_sample_abstains_counts_as_wrong(monkeypatch):
    voted = table("qwen3-0.6b", CONFIGS[0], 10, [100] * 2, [1, 1], ["9", "9"])
    silent = table("qwen3-0.6b", CONFIGS[0], 10, [100] * 2, [0, 0], [None, None])
    silent["query_id"] = "r"
    both = pd.concat([voted, silent], ignore_index=True)
    out = best_of_n(both, MODELS)
    assert out[out["query_id"] == "r"]["majority"].tolist() == [0.0, 0.0]
    # the same when the silent query is a block of its own
    monkeypatch.setattr(strategies, "BLOCK_CELLS", 2)
    assert len(strategies.query_blocks(both, 2)) == 2
    pd.testing.assert_frame_equal(best_of_n(both, MODELS), out)


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


def test_long_cot_counts_an_answer_at_exactly_the_budget():
    # answer at token 2048 of 3000: correct within a 2048-token budget, not within 2047
    trials = table("qwen3-1.7b", CONFIGS[0], 40, [3000, 3000], [1, 0], answer_pos=[2048, 1000])
    out = long_cot(trials, MODELS, (2048, 2047)).sort_values("gen_budget")
    assert out["gen_budget"].tolist() == [2047, 2048]
    assert out["accuracy"].tolist() == [0.0, 0.5]


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 200), st.integers(0, 2**16))
def test_blocks_of_whole_queries_do_not_change_the_options(block_cells, seed):
    """best_of_n / long_cot over blocks of queries (any block size, shuffled rows)
    equal one pass over the whole table."""
    from kinetics.analysis.synthetic import SyntheticSpec, generate_trials

    spec = SyntheticSpec(accuracy={"qwen3-0.6b": 0.4, "qwen3-4b": 0.7}, num_queries=4,
                         default_trials=5, max_len=3000,
                         configs=(AttentionConfig.dense(), AttentionConfig.topk(256)))
    trials = validate_trials(generate_trials(seed % 97, spec)).sample(frac=1, random_state=seed)
    whole = best_of_n(trials, MODELS), long_cot(trials, MODELS, (512, 2048))
    saved = strategies.BLOCK_CELLS
    try:
        strategies.BLOCK_CELLS = block_cells
        assert len(strategies.query_blocks(trials, 5)) > 1  # 80 rows, <= 40 a block
        pd.testing.assert_frame_equal(best_of_n(trials, MODELS), whole[0])
        pd.testing.assert_frame_equal(long_cot(trials, MODELS, (512, 2048)), whole[1])
    finally:
        strategies.BLOCK_CELLS = saved
