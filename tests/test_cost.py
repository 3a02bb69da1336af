"""Properties of the exact cost model, checked against brute-force loops over t."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinetics.cost import (
    KV_DTYPES,
    MAX_TOKENS,
    WEIGHT_DTYPES,
    AttentionConfig,
    Cost,
    CostSettings,
    as_token_counts,
    attended_token_sum,
    block_key_sum,
    context_token_sum,
    kv_bytes_per_element,
    query_cost,
    sample_cost,
    shared_cost,
    weight_bytes_per_param,
    weight_bytes_per_step,
    weight_cost,
)
from kinetics.errors import InputError
from kinetics.models import MODELS

MODEL_NAMES = sorted(MODELS)
models = st.sampled_from(MODEL_NAMES).map(MODELS.__getitem__)
lengths = st.integers(min_value=0, max_value=3000)
budgets = st.integers(min_value=1, max_value=4000)
trials = st.integers(min_value=1, max_value=32)


def brute_force(model, attention, prompt_len, gen_len, num_samples, kv_bytes=2):
    """Loop over every decode step of N samples, the issue's definitions verbatim;
    ``kv_bytes`` bytes per KV element (2 for bf16)."""
    L, hq, hkv, d = model.num_layers, model.num_q_heads, model.num_kv_heads, model.head_dim
    hkv = hkv * kv_bytes / 2  # the byte terms below are written for 2-byte elements
    compute = memory = 0
    for t in range(gen_len):
        c = prompt_len + t + 1
        compute += num_samples * 2 * model.active_params
        if attention.method == "dense":
            compute += num_samples * 4 * L * hq * d * c
            # prompt KV read once for all N, each sample's own t+1 tokens
            memory += 4 * L * hkv * d * (prompt_len + num_samples * (t + 1))
            continue
        a = min(attention.budget, c)
        compute += num_samples * 4 * L * hq * d * a
        memory += num_samples * 4 * L * hkv * d * a
        if attention.method == "blocktopk":
            b = attention.block_size
            keys = math.ceil(c / b)
            shared_keys = prompt_len // b
            compute += num_samples * 2 * L * hq * d * keys
            memory += 2 * L * hkv * d * (shared_keys + num_samples * (keys - shared_keys))
    return compute, memory


@st.composite
def attention_configs(draw):
    method = draw(st.sampled_from(["dense", "topk", "blocktopk"]))
    if method == "dense":
        return AttentionConfig.dense()
    if method == "topk":
        return AttentionConfig.topk(draw(budgets))
    block = draw(st.sampled_from([1, 2, 4, 16, 64]))
    return AttentionConfig.blocktopk(block, topk_blocks=draw(st.integers(1, 64)),
                                     local=draw(st.integers(0, 256)))


@settings(max_examples=60, deadline=None)
@given(models, attention_configs(), st.integers(0, 300), st.integers(0, 300), st.integers(1, 8))
def test_closed_forms_equal_brute_force_loop(model, attention, s, t, n):
    cost = query_cost(model, attention, s, t, n)
    compute, memory = brute_force(model, attention, s, t, n)
    assert float(cost.compute_flops) == pytest.approx(compute, rel=1e-12, abs=0)
    assert float(cost.memory_bytes) == pytest.approx(memory, rel=1e-12, abs=0)


@settings(max_examples=40, deadline=None)
@given(models, attention_configs(), st.integers(0, 300), st.integers(0, 300), st.integers(1, 8),
       st.sampled_from(sorted(KV_DTYPES)))
def test_closed_forms_equal_brute_force_loop_at_every_kv_dtype(model, attention, s, t, n, kv):
    cost = query_cost(model, attention, s, t, n, kv_dtype=kv)
    compute, memory = brute_force(model, attention, s, t, n, kv_bytes={"bf16": 2, "fp8": 1}[kv])
    assert float(cost.compute_flops) == pytest.approx(compute, rel=1e-12, abs=0)
    assert float(cost.memory_bytes) == pytest.approx(memory, rel=1e-12, abs=0)


@given(st.integers(0, 500), st.integers(0, 500), budgets)
def test_attended_token_sum_is_exact_integer_sum(s, t, b):
    assert attended_token_sum(s, t, b) == sum(min(b, s + i + 1) for i in range(t))


@given(st.integers(0, 500), st.integers(0, 500), st.integers(1, 70))
def test_block_key_sum_is_exact_integer_sum(s, t, b):
    assert block_key_sum(s, t, b) == sum(-(-(s + i + 1) // b) for i in range(t))


def test_topk_sum_catches_the_sign_error_class():
    """The public code's 0.5*(B-S)^2 approximation with a flipped sign is far off."""
    s, t, b = 128, 32768, 1024
    exact = int(attended_token_sum(s, t, b))
    assert exact == sum(min(b, s + i + 1) for i in range(t))
    # the continuous form, correct sign: B*T - 0.5*(B-S)^2
    assert exact == pytest.approx(b * t - 0.5 * (b - s) ** 2, rel=1e-3)
    assert abs(exact - (b * t + 0.5 * (b - s) ** 2)) > 1e5  # the wrong sign misses


def _monotone(f, lo, hi):
    a, b = f(lo), f(hi)
    return np.all(a.compute_flops <= b.compute_flops) and np.all(a.memory_bytes <= b.memory_bytes)


@given(models, attention_configs(), lengths, lengths, lengths, trials)
def test_cost_non_decreasing_in_gen_len(model, attention, s, t1, t2, n):
    lo, hi = sorted((t1, t2))
    assert _monotone(lambda t: query_cost(model, attention, s, t, n), lo, hi)


@given(models, attention_configs(), lengths, lengths, lengths, trials)
def test_cost_non_decreasing_in_prompt_len(model, attention, s1, s2, t, n):
    lo, hi = sorted((s1, s2))
    if attention.method != "blocktopk" or n == 1:
        assert _monotone(lambda s: query_cost(model, attention, s, t, n), lo, hi)
        return
    # Block top-k with N > 1: a prompt block that becomes full moves from N private
    # reads to one shared read, so memory may drop, by at most (N-1) x T keys for each
    # block boundary crossed. Compute never drops.
    a, b = query_cost(model, attention, lo, t, n), query_cost(model, attention, hi, t, n)
    assert a.compute_flops <= b.compute_flops
    crossed = hi // attention.block_size - lo // attention.block_size
    key_bytes = 2 * model.num_layers * model.num_kv_heads * model.head_dim
    assert b.memory_bytes >= a.memory_bytes - (n - 1) * t * crossed * key_bytes


def test_blocktopk_prompt_filling_a_block_can_lower_best_of_n_memory():
    """The case hypothesis found: S 63 -> 64 fills block 31, shared by all 3 samples."""
    model, attention = MODELS["qwen3-0.6b"], AttentionConfig.blocktopk(2, topk_blocks=1)
    shorter = query_cost(model, attention, 63, 2, 3)
    longer = query_cost(model, attention, 64, 2, 3)
    assert longer.memory_bytes < shorter.memory_bytes
    assert longer.compute_flops >= shorter.compute_flops


@given(models, attention_configs(), lengths, lengths, trials, trials)
def test_cost_non_decreasing_in_trials(model, attention, s, t, n1, n2):
    lo, hi = sorted((n1, n2))
    assert _monotone(lambda n: query_cost(model, attention, s, t, n), lo, hi)


@given(models, lengths, lengths, trials, budgets, budgets, st.sampled_from(["topk", "blocktopk"]),
       st.sampled_from([1, 8, 16, 64]))
def test_cost_non_decreasing_in_budget(model, s, t, n, b1, b2, method, block):
    lo, hi = sorted((b1, b2))

    def make(budget):
        if method == "topk":
            return AttentionConfig.topk(budget)
        return AttentionConfig.blocktopk(block, topk_blocks=max(1, budget // block))

    assert _monotone(lambda b: query_cost(model, make(b), s, t, n), lo, hi)


@given(models, lengths, lengths, trials, budgets)
def test_topk_never_exceeds_dense_when_budget_within_prompt(model, s, t, n, b):
    b = min(b, max(s, 1))
    if b > s:
        return
    sparse = query_cost(model, AttentionConfig.topk(b), s, t, n)
    dense = query_cost(model, AttentionConfig.dense(), s, t, n)
    assert np.all(sparse.compute_flops <= dense.compute_flops)
    # memory: sparse reads have no prefix sharing, so the bound is per sample
    one_sparse = query_cost(model, AttentionConfig.topk(b), s, t, 1)
    one_dense = query_cost(model, AttentionConfig.dense(), s, t, 1)
    assert np.all(one_sparse.memory_bytes <= one_dense.memory_bytes)


def test_prefix_sharing_can_make_dense_memory_smaller_than_topk():
    """A documented consequence, not an accident: N samples share the prompt's KV reads."""
    model = MODELS["qwen3-8b"]
    sparse = query_cost(model, AttentionConfig.topk(100), 100, 1, 10)
    dense = query_cost(model, AttentionConfig.dense(), 100, 1, 10)
    assert sparse.memory_bytes > dense.memory_bytes


@given(models, st.integers(1, 512), st.integers(0, 64), st.integers(1, 16), st.integers(0, 64),
       st.sampled_from([2, 4, 16]), trials)
def test_blocktopk_never_exceeds_dense_when_selection_fits(model, s, t, k, w, b, n):
    """Block top-k (attention + selection) is cheaper than dense when B + ceil(c/b) <= c."""
    attention = AttentionConfig.blocktopk(b, topk_blocks=k, local=w)
    if attention.budget + -(-(s + t) // b) > s + 1:
        return
    sparse = query_cost(model, attention, s, t, 1)
    dense = query_cost(model, AttentionConfig.dense(), s, t, 1)
    assert np.all(sparse.compute_flops <= dense.compute_flops)
    assert np.all(sparse.memory_bytes <= dense.memory_bytes)


@given(models, lengths, lengths)
def test_topk_with_budget_covering_context_equals_dense(model, s, t):
    sparse = query_cost(model, AttentionConfig.topk(s + t + 1), s, t, 1)
    dense = query_cost(model, AttentionConfig.dense(), s, t, 1)
    np.testing.assert_array_equal(sparse.compute_flops, dense.compute_flops)
    np.testing.assert_array_equal(sparse.memory_bytes, dense.memory_bytes)


@given(models, lengths, lengths, budgets, trials)
def test_blocktopk_unit_blocks_is_topk_plus_selection(model, s, t, b, n):
    block = AttentionConfig.blocktopk(1, topk_blocks=b, local=0)
    topk = AttentionConfig.topk(b)
    diff_compute = query_cost(model, block, s, t, n).compute_flops - query_cost(model, topk, s, t, n).compute_flops
    diff_memory = query_cost(model, block, s, t, n).memory_bytes - query_cost(model, topk, s, t, n).memory_bytes
    L, hq, hkv, d = model.num_layers, model.num_q_heads, model.num_kv_heads, model.head_dim
    keys = sum(s + i + 1 for i in range(t))  # b = 1: one key per token
    assert diff_compute == n * 2 * L * hq * d * keys
    assert diff_memory == 2 * L * hkv * d * (s * t + n * (keys - s * t))


def test_moe_compute_uses_active_parameters():
    moe = MODELS["qwen3-30b-a3b"]
    assert moe.is_moe and moe.active_params < moe.total_params
    no_attention = sample_cost(moe, AttentionConfig.dense(), 0, 1)  # one token, context 1
    attention_flops = 4 * moe.num_layers * moe.num_q_heads * moe.head_dim
    assert float(no_attention.compute_flops) == 2 * moe.active_params + attention_flops
    for name, model in MODELS.items():
        if not model.is_moe:
            assert model.active_params == model.total_params, name


def test_vectorized_over_arrays_matches_scalars():
    model = MODELS["qwen3-4b"]
    attention = AttentionConfig.blocktopk(16, topk_blocks=8, local=32)
    s = np.array([0, 10, 128, 4000])
    t = np.array([5, 0, 700, 32768])
    batch = query_cost(model, attention, s, t, 4)
    for i in range(len(s)):
        one = query_cost(model, attention, int(s[i]), int(t[i]), 4)
        assert batch.compute_flops[i] == one.compute_flops
        assert batch.memory_bytes[i] == one.memory_bytes


def test_shared_cost_is_zero_for_topk():
    cost = shared_cost(MODELS["qwen3-8b"], AttentionConfig.topk(64), 100, 50)
    assert float(cost.memory_bytes) == 0 and float(cost.compute_flops) == 0


def test_weight_traffic_amortizes_over_batch():
    dense, moe = MODELS["qwen3-8b"], MODELS["qwen3-30b-a3b"]
    assert weight_bytes_per_step(dense, 1) == weight_bytes_per_step(dense, 64) == 2 * dense.total_params
    assert weight_bytes_per_step(moe, 1) == pytest.approx(2 * moe.active_params)
    assert weight_bytes_per_step(moe, 4096) == pytest.approx(2 * moe.total_params, rel=1e-6)
    base = query_cost(dense, AttentionConfig.dense(), 128, 1000, 1)
    with_weights = query_cost(dense, AttentionConfig.dense(), 128, 1000, 1, batch_size=8)
    assert with_weights.memory_bytes - base.memory_bytes == pytest.approx(1000 * 2 * dense.total_params / 8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="topk"), "topk needs a budget of at least 1 token, got None"),
    (dict(method="topk", budget=0), "topk needs a budget of at least 1 token, got 0"),
    (dict(method="blocktopk", budget=64), "blocktopk needs a block size of at least 1, got None"),
    (dict(method="wavelet"), "unknown method 'wavelet' (choose from dense, topk, blocktopk)"),
    (dict(method="blocktopk", budget=65, block_size=16),
     "blocktopk budget 65 must be local (0) plus a whole number of blocks of 16"),
    (dict(method="blocktopk", budget=64, block_size=16, local=-16),
     "local window must be >= 0 tokens, got -16"),
    (dict(method="dense", budget=5), "dense attention takes no budget, block size or local window"),
    (dict(method="dense", block_size=16), "dense attention takes no budget"),
    (dict(method="dense", local=8), "dense attention takes no budget"),
    (dict(method="topk", budget=64, block_size=16), "top-k takes no block size or local window"),
    (dict(method="topk", budget=64, local=8), "top-k takes no block size or local window"),
])
def test_bad_attention_configs_raise_input_error(kwargs, message):
    with pytest.raises(InputError) as info:
        AttentionConfig(**kwargs)
    assert str(info.value).startswith(message)


def test_blocktopk_constructor_takes_blocks_or_a_budget_and_no_window_by_default():
    by_blocks = AttentionConfig.blocktopk(16, topk_blocks=4)
    assert by_blocks == AttentionConfig("blocktopk", budget=64, block_size=16, local=0)
    assert by_blocks == AttentionConfig.blocktopk(16, budget=64)
    assert AttentionConfig.blocktopk(16, topk_blocks=4, local=8).budget == 72
    for both_or_neither in (dict(), dict(topk_blocks=4, budget=64)):
        with pytest.raises(InputError, match="exactly one of a budget or a number of top-k blocks"):
            AttentionConfig.blocktopk(16, **both_or_neither)


def test_cost_sums_and_eflops_add_componentwise():
    a = Cost(np.array([1.0, 2.0]), np.array([10.0, 20.0]))
    b = Cost(np.array([3.0, 5.0]), np.array([7.0, 11.0]))
    total = a + b
    np.testing.assert_array_equal(total.compute_flops, [4.0, 7.0])
    np.testing.assert_array_equal(total.memory_bytes, [17.0, 31.0])
    np.testing.assert_array_equal(a.eflops(562.5), [1.0 + 5625.0, 2.0 + 11250.0])
    np.testing.assert_array_equal(a.scale(3).memory_bytes, [30.0, 60.0])


def test_dense_attended_sum_is_the_context_sum():
    assert attended_token_sum(100, 50, None) == context_token_sum(100, 50) == 100 * 50 + 50 * 51 // 2


@pytest.mark.parametrize("method", [AttentionConfig.dense(), AttentionConfig.topk(64),
                                    AttentionConfig.blocktopk(16, topk_blocks=2)])
@pytest.mark.parametrize("batch_size", [None, 8])
def test_costs_broadcast_prompt_and_gen_len_arrays(method, batch_size):
    model, prompts = MODELS["qwen3-8b"], np.array([10, 200, 3000])
    for s, t in ((prompts, 500), (500, prompts), (prompts, prompts[::-1])):
        parts = (sample_cost(model, method, s, t), shared_cost(model, method, s, t),
                 weight_cost(model, t, batch_size), query_cost(model, method, s, t, 4, batch_size))
        for part in parts[:2] + parts[3:]:
            assert part.compute_flops.shape == part.memory_bytes.shape == (3,)
        assert parts[2].compute_flops.shape == parts[2].memory_bytes.shape == np.shape(t)
        for i in range(3):
            one = query_cost(model, method, np.broadcast_to(s, 3)[i], np.broadcast_to(t, 3)[i], 4,
                             batch_size)
            assert parts[-1].compute_flops[i] == one.compute_flops
            assert parts[-1].memory_bytes[i] == one.memory_bytes


# --- exactness over the whole accepted range (0..MAX_TOKENS), against Python ints -------

def _triangular(n):
    return n * (n + 1) // 2


def exact_cost(model, attention, s, t, n):
    """Compute FLOPs and memory bytes of N samples in Python integers (no overflow).

    Sums over c = S+1..S+T written differently from kinetics.cost: sum(min(B, c)) as
    sum(c) - sum(max(0, c - B)), and sum(ceil(c/b)) as a difference of prefix sums.
    """
    L, hq, hkv, d = model.num_layers, model.num_q_heads, model.num_kv_heads, model.head_dim
    context = _triangular(s + t) - _triangular(s)
    compute = n * 2 * model.active_params * t
    if attention.method == "dense":
        compute += n * 4 * L * hq * d * context
        return compute, 4 * L * hkv * d * (s * t + n * _triangular(t))
    excess = _triangular(max(0, s + t - attention.budget)) - _triangular(max(0, s - attention.budget))
    attended = context - excess
    compute += n * 4 * L * hq * d * attended
    memory = n * 4 * L * hkv * d * attended
    if attention.method == "blocktopk":
        b = attention.block_size

        def prefix(m):  # sum_{c=1}^{m} ceil(c / b)
            q, r = divmod(m, b)
            return b * _triangular(q) + r * (q + 1)

        keys, shared_keys = prefix(s + t) - prefix(s), (s // b) * t
        compute += n * 2 * L * hq * d * keys
        memory += 2 * L * hkv * d * (shared_keys + n * (keys - shared_keys))
    return compute, memory


# anywhere in the accepted range, with its edges and small values drawn often
token_lengths = st.one_of(st.sampled_from([0, 1, MAX_TOKENS - 1, MAX_TOKENS]),
                          st.integers(0, 4096), st.integers(0, MAX_TOKENS))
block_sizes = st.one_of(st.sampled_from([1, 2, 16, MAX_TOKENS]), st.integers(1, MAX_TOKENS))


@st.composite
def any_attention(draw):
    """Any valid config, lengths anywhere in 0..MAX_TOKENS."""
    method = draw(st.sampled_from(["dense", "topk", "blocktopk"]))
    if method == "dense":
        return AttentionConfig.dense()
    if method == "topk":
        return AttentionConfig.topk(draw(st.integers(1, MAX_TOKENS)))
    block = draw(block_sizes)
    local = draw(st.one_of(st.just(0), st.integers(0, MAX_TOKENS)))
    blocks = draw(st.integers(0 if local else 1, (MAX_TOKENS - local) // block))
    return AttentionConfig.blocktopk(block, topk_blocks=blocks, local=local)


@settings(max_examples=300, deadline=None)
@given(models, any_attention(), token_lengths, token_lengths, st.integers(1, 64))
def test_costs_are_exact_over_the_whole_accepted_range(model, attention, s, t, n):
    """Exact integers below 2**53, within 1e-15 relative above: never a wrapped value."""
    cost = query_cost(model, attention, s, t, n)
    for got, want in zip((cost.compute_flops, cost.memory_bytes), exact_cost(model, attention, s, t, n),
                         strict=True):
        got = float(got)
        if want < 2**53:
            assert got == want
        else:
            assert abs(got - want) <= 1e-15 * want


@settings(max_examples=300, deadline=None)
@given(token_lengths, token_lengths, token_lengths.filter(bool), block_sizes)
def test_token_sums_are_exact_integers_over_the_whole_accepted_range(s, t, budget, block):
    context = _triangular(s + t) - _triangular(s)
    assert int(context_token_sum(s, t)) == context
    excess = _triangular(max(0, s + t - budget)) - _triangular(max(0, s - budget))
    assert int(attended_token_sum(s, t, budget)) == context - excess
    q1, q0 = divmod(s + t, block), divmod(s, block)
    prefix = [block * _triangular(q) + r * (q + 1) for q, r in (q1, q0)]
    assert int(block_key_sum(s, t, block)) == prefix[0] - prefix[1]


@given(token_lengths, st.integers(0, 64), token_lengths.filter(bool), block_sizes)
def test_token_sums_equal_the_loop_at_huge_prompts(s, t, budget, block):
    contexts = range(s + 1, s + t + 1)
    assert int(context_token_sum(s, t)) == sum(contexts)
    assert int(attended_token_sum(s, t, budget)) == sum(min(budget, c) for c in contexts)
    assert int(block_key_sum(s, t, block)) == sum(-(-c // block) for c in contexts)


def test_largest_lengths_do_not_wrap_around():
    """The issue's cases: T = 4e9 wrapped negative; the cap, 2**31, is exact."""
    s = t = MAX_TOKENS
    assert int(context_token_sum(s, t)) == s * t + t * (t + 1) // 2 > 2**62
    assert int(block_key_sum(s, t, 1)) == s * t + t * (t + 1) // 2  # unit blocks: one key a token
    cost = query_cost(MODELS["qwen3-8b"], AttentionConfig.dense(), 10, MAX_TOKENS)
    compute, memory = exact_cost(MODELS["qwen3-8b"], AttentionConfig.dense(), 10, MAX_TOKENS, 1)
    assert float(cost.compute_flops) == pytest.approx(compute, rel=1e-15)
    assert float(cost.memory_bytes) == pytest.approx(memory, rel=1e-15)


@pytest.mark.parametrize("value, shown", [
    (MAX_TOKENS + 1, "got 2147483649"), (4_000_000_000, "got 4000000000"), (10**10, "got 10000000000"),
    (10**30, f"got {10**30}"), (-1, "got -1"), (np.array([5, 2**40]), "got 1099511627776"),
    (np.array([-3, 2**40]), "got -3"), (np.array([0.0, 2.0**31 + 1]), "got 2147483649.0"),
    (np.array([0, 2**32], dtype=np.uint64), "got 4294967296"),
    (np.array([-1, 7], dtype=np.int32), "got -1"),
])
@pytest.mark.parametrize("field", ["prompt_len", "gen_len"])
def test_lengths_beyond_the_cap_are_rejected_naming_the_field(value, shown, field):
    lengths = {"prompt_len": 10, "gen_len": 10, field: value}
    with pytest.raises(InputError) as info:
        query_cost(MODELS["qwen3-8b"], AttentionConfig.dense(), **lengths)
    assert str(info.value) == f"field '{field}': {field} must be 0..2147483648 (2**31) tokens, {shown}"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), np.array([1.0, np.nan])])
def test_non_finite_lengths_are_rejected(value):
    with pytest.raises(InputError, match="field 'gen_len': gen_len must be a finite number of tokens"):
        as_token_counts(value, "gen_len")


@pytest.mark.parametrize("values", [
    np.array([0, MAX_TOKENS]), np.array([0.0, 2.0**31]), np.array([0, 7], dtype=np.int32),
    np.array([0, MAX_TOKENS], dtype=np.uint64), np.array([], dtype=np.int64), np.array([]),
    [0, 3], 0, MAX_TOKENS, True,
])
def test_lengths_within_the_cap_become_int64(values):
    counts = as_token_counts(values, "gen_len")
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, np.asarray(values))


def test_every_cost_function_names_the_length_it_rejects():
    model, huge = MODELS["qwen3-8b"], 2**40
    with pytest.raises(InputError, match="field 'budget'"):
        attended_token_sum(1, 1, huge)
    with pytest.raises(InputError, match="field 'block_size'"):
        block_key_sum(1, 1, huge)
    with pytest.raises(InputError, match="field 'gen_len'"):
        weight_cost(model, huge, 8)
    with pytest.raises(InputError, match="field 'prompt_len'"):
        shared_cost(model, AttentionConfig.dense(), huge, 1)
    with pytest.raises(InputError, match="--batch-size must be at least 1, got 0"):
        weight_bytes_per_step(model, 0)


@pytest.mark.parametrize("kwargs, field", [
    (dict(method="topk", budget=MAX_TOKENS + 1), "budget"),
    (dict(method="blocktopk", budget=MAX_TOKENS + 16, block_size=16), "budget"),
    (dict(method="blocktopk", budget=MAX_TOKENS, block_size=2**40), "block_size"),
    (dict(method="blocktopk", budget=MAX_TOKENS, block_size=16, local=2**32), "local"),
])
def test_config_lengths_beyond_the_cap_are_rejected(kwargs, field):
    with pytest.raises(InputError, match=field):
        AttentionConfig(**kwargs)
    assert AttentionConfig.topk(MAX_TOKENS).budget == MAX_TOKENS


def test_blocktopk_budget_below_its_local_window_is_rejected_but_equal_is_accepted():
    # -16 is a whole number of 16-token blocks: only the sign rules it out
    with pytest.raises(InputError, match="local"):
        AttentionConfig("blocktopk", budget=16, block_size=16, local=32)
    with pytest.raises(InputError):
        AttentionConfig("blocktopk", budget=1, block_size=1, local=2)
    window_only = AttentionConfig("blocktopk", budget=32, block_size=16, local=32)
    assert window_only.topk_blocks == 0
    assert AttentionConfig.blocktopk(16, topk_blocks=0, local=32) == window_only


def test_moe_with_every_expert_active_reads_all_weights_every_step():
    base = MODELS["qwen3-30b-a3b"]
    everything = replace(base, experts_per_token=base.num_experts, published_params=None)
    assert everything.active_params == everything.total_params
    for batch in (1, 7, 4096):
        assert weight_bytes_per_step(everything, batch) == 2 * everything.total_params
    # and one expert of many: one token reads the shared weights plus one expert stack
    one = replace(base, experts_per_token=1, published_params=None)
    expert_stack = one.num_layers * one.expert_params
    assert weight_bytes_per_step(one, 1) == pytest.approx(2 * one.active_params)
    assert weight_bytes_per_step(one, 2) == pytest.approx(
        2 * (one.active_params + expert_stack * (1 - 1 / one.num_experts)))


# --- element sizes: --kv-dtype and --weight-dtype ------------------------------------

def test_element_sizes_are_the_types_bytes():
    assert KV_DTYPES == {"bf16": 2, "fp8": 1}
    assert WEIGHT_DTYPES == {"bf16": 2.0, "fp8": 1.0, "int4": 0.5}
    assert [kv_bytes_per_element(k) for k in ("bf16", "fp8")] == [2, 1]
    assert [weight_bytes_per_param(w) for w in ("bf16", "fp8", "int4")] == [2.0, 1.0, 0.5]


@pytest.mark.parametrize("call, message, field", [
    (lambda: kv_bytes_per_element("int4"),
     "unknown KV-cache dtype 'int4' (choose from bf16, fp8)", "kv_dtype"),
    (lambda: weight_bytes_per_param("fp16"),
     "unknown weight dtype 'fp16' (choose from bf16, fp8, int4)", "weight_dtype"),
    (lambda: query_cost(MODELS["qwen3-8b"], AttentionConfig.dense(), 1, 1, kv_dtype="BF16"),
     "unknown KV-cache dtype 'BF16'", "kv_dtype"),
    (lambda: query_cost(MODELS["qwen3-8b"], AttentionConfig.dense(), 1, 1, weight_dtype="int8"),
     "unknown weight dtype 'int8'", "weight_dtype"),
    (lambda: weight_cost(MODELS["qwen3-8b"], 10, None, "int8"), "unknown weight dtype", "weight_dtype"),
    (lambda: weight_bytes_per_step(MODELS["qwen3-8b"], 4, "fp4"), "unknown weight dtype",
     "weight_dtype"),
    (lambda: CostSettings(kv_dtype="fp16"), "unknown KV-cache dtype 'fp16'", "kv_dtype"),
    (lambda: CostSettings(weight_dtype="fp16"), "unknown weight dtype 'fp16'", "weight_dtype"),
])
def test_unknown_dtypes_are_input_errors_naming_the_field(call, message, field):
    with pytest.raises(InputError) as err:
        call()
    assert message in str(err.value) and err.value.field == field


def test_cost_settings_rejects_a_batch_below_one_and_defaults_to_the_paper():
    with pytest.raises(InputError, match="--batch-size must be at least 1, got 0"):
        CostSettings(batch_size=0)
    assert CostSettings() == CostSettings("bf16", "bf16", None)
    assert CostSettings(batch_size=1).batch_size == 1


@settings(max_examples=80, deadline=None)
@given(models, any_attention(), token_lengths, token_lengths, st.integers(1, 64),
       st.one_of(st.none(), st.integers(1, 4096)))
def test_the_default_is_bf16_and_fp8_kv_halves_every_byte_exactly(model, attention, s, t, n, batch):
    """Defaults unchanged; an fp8 KV cache halves the KV bytes (a power of two: exact),
    leaves weight bytes and every FLOP alone."""
    default = query_cost(model, attention, s, t, n, batch)
    bf16 = query_cost(model, attention, s, t, n, batch, kv_dtype="bf16", weight_dtype="bf16")
    fp8 = query_cost(model, attention, s, t, n, batch, kv_dtype="fp8")
    weights = weight_cost(model, t, batch).memory_bytes * n
    assert float(default.compute_flops) == float(bf16.compute_flops) == float(fp8.compute_flops)
    assert float(default.memory_bytes) == float(bf16.memory_bytes)
    kv_bf16 = query_cost(model, attention, s, t, n).memory_bytes
    kv_fp8 = query_cost(model, attention, s, t, n, kv_dtype="fp8").memory_bytes
    assert float(kv_fp8) * 2 == float(kv_bf16)
    assert float(fp8.memory_bytes) == pytest.approx(float(kv_fp8 + weights), rel=1e-15)
    for part in (sample_cost, shared_cost):
        half = part(model, attention, s, t, kv_dtype="fp8")
        full = part(model, attention, s, t)
        assert float(half.memory_bytes) * 2 == float(full.memory_bytes)
        assert float(half.compute_flops) == float(full.compute_flops)


@settings(max_examples=80, deadline=None)
@given(models, any_attention(), token_lengths, st.integers(0, 2**20), st.integers(1, 64),
       st.integers(1, 4096), st.sampled_from(sorted(WEIGHT_DTYPES)))
def test_weight_dtype_scales_only_the_weight_bytes(model, attention, s, t, n, batch, dtype):
    """Weight bytes = bytes per parameter x the bf16 count / 2, exactly (powers of two);
    KV bytes and FLOPs do not move, and nothing moves without a batch size."""
    per_param = WEIGHT_DTYPES[dtype]
    step = weight_bytes_per_step(model, batch, dtype)
    assert step == weight_bytes_per_step(model, batch) * per_param / 2
    got = weight_cost(model, t, batch, dtype)
    assert float(got.memory_bytes) == float(weight_cost(model, t, batch).memory_bytes) * per_param / 2
    assert float(got.compute_flops) == 0
    base = query_cost(model, attention, s, t, n, batch)
    priced = query_cost(model, attention, s, t, n, batch, weight_dtype=dtype)
    assert float(priced.compute_flops) == float(base.compute_flops)
    kv = query_cost(model, attention, s, t, n).memory_bytes
    assert float(priced.memory_bytes) == pytest.approx(float(kv + n * got.memory_bytes), rel=1e-15)
    unbatched = query_cost(model, attention, s, t, n, weight_dtype=dtype)
    assert float(unbatched.memory_bytes) == float(kv)


def test_weight_bytes_golden_numbers():
    """Computed by hand from the published counts: 8.19e9 parameters of Qwen3-8B."""
    dense = MODELS["qwen3-8b"]
    assert weight_bytes_per_step(dense, 1, "bf16") == 16.38e9
    assert weight_bytes_per_step(dense, 1, "fp8") == 8.19e9
    assert weight_bytes_per_step(dense, 3, "int4") == 4.095e9
    assert float(weight_cost(dense, 1000, 8, "int4").memory_bytes) == 1000 * 4.095e9 / 8
    # an fp8 KV cache: Qwen3-8B's 36 layers x 8 KV heads x 128 dims, K and V, 1 byte each
    one_token = query_cost(dense, AttentionConfig.dense(), 0, 1, kv_dtype="fp8")
    assert float(one_token.memory_bytes) == 2 * 36 * 8 * 128


def test_cost_settings_private_and_shared_are_the_cost_functions():
    model, attention = MODELS["qwen3-30b-a3b"], AttentionConfig.blocktopk(16, topk_blocks=4)
    settings = CostSettings("fp8", "int4", 32)
    private = settings.private(model, attention, 100, 300)
    want = (sample_cost(model, attention, 100, 300, "fp8")
            + weight_cost(model, 300, 32, "int4"))
    assert float(private.memory_bytes) == float(want.memory_bytes)
    assert float(private.compute_flops) == float(want.compute_flops)
    shared = settings.shared(model, attention, 100, 300)
    assert float(shared.memory_bytes) == float(shared_cost(model, attention, 100, 300, "fp8")
                                              .memory_bytes) > 0
    total = query_cost(model, attention, 100, 300, 3, 32, "fp8", "int4")
    assert float(total.memory_bytes) == float(3 * private.memory_bytes + shared.memory_bytes)
