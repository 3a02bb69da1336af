"""Pure metric and selection properties on random tensors (hypothesis, no model)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kinetics.attention.reference import (  # noqa: E402
    causal_attention_probs,
    causal_masked_attention,
)
from kinetics.errors import InputError  # noqa: E402
from kinetics.quality import metrics  # noqa: E402
from kinetics.quality.sparse import SparseConfig, build_configs, selection_mask  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def qk(draw, group=None):
    """Random q ``[1, Hq, T, D]``, k, v ``[1, Hkv, T, D]``."""
    kv_heads = draw(st.sampled_from([1, 2]))
    g = group or draw(st.sampled_from([1, 3]))
    t = draw(st.integers(2, 64))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.randn((1, kv_heads * g, t, 8), generator=gen) * 2
    k = torch.randn((1, kv_heads, t, 8), generator=gen) * 2
    v = torch.randn((1, kv_heads, t, 8), generator=gen)
    return q, k, v


def _recall(config, q, k, decode_start=0):
    probs = causal_attention_probs(q, k)
    return metrics.attention_recall(probs, selection_mask(config, q, k, decode_start))


@SETTINGS
@given(qk(), st.sampled_from([1, 4, 16]), st.integers(0, 8))
def test_budget_covering_context_is_exactly_dense(problem, block, extra):
    q, k, v = problem
    t = q.shape[2]
    budget = (-(-t // block) + extra) * block
    dense = causal_masked_attention(q, k, v)
    for config in (SparseConfig("topk", t + extra), SparseConfig("blocktopk", budget, block)):
        mask = selection_mask(config, q, k)
        assert torch.equal(causal_masked_attention(q, k, v, mask), dense)
        recall = _recall(config, q, k)
        torch.testing.assert_close(recall, torch.ones_like(recall))


@SETTINGS
@given(qk(group=1), st.sampled_from([1, 2, 4, 8]), st.integers(1, 6), st.integers(0, 20))
def test_oracle_recall_at_least_block_recall(problem, block, pages, decode_start):
    # with one query head per KV head the oracle keeps the k largest probabilities,
    # and block top-k keeps at most k tokens: no set of <= k tokens holds more mass
    q, k, _ = problem
    budget = pages * block
    oracle = _recall(SparseConfig("topk", budget), q, k, decode_start)
    blocks = _recall(SparseConfig("blocktopk", budget, block), q, k, decode_start)
    assert (oracle >= blocks - 1e-5).all()


@SETTINGS
@given(qk(), st.integers(1, 40), st.integers(1, 40))
def test_oracle_recall_non_decreasing_in_budget(problem, a, b):
    q, k, _ = problem
    low, high = sorted((a, b))
    r_low = _recall(SparseConfig("topk", low), q, k)
    r_high = _recall(SparseConfig("topk", high), q, k)
    assert (r_high >= r_low - 1e-5).all()
    assert ((r_low >= -1e-6) & (r_high <= 1 + 1e-5)).all()


@SETTINGS
@given(qk(), st.integers(0, 70), st.integers(1, 8))
def test_prompt_positions_attend_densely(problem, decode_start, budget):
    q, k, _ = problem
    mask = selection_mask(SparseConfig("topk", budget), q, k, decode_start)
    t = q.shape[2]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    rows = min(decode_start, t)
    assert torch.equal(mask[0, :, :rows], causal[:rows].expand(mask.shape[1], -1, -1))
    assert (mask[0, :, rows:].sum(-1) == torch.arange(rows, t).clamp(max=budget - 1) + 1).all()


@SETTINGS
@given(st.integers(1, 6), st.integers(2, 50), st.integers(0, 2**31 - 1))
def test_next_token_metrics(n, vocab, seed):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn((n, vocab), generator=gen)
    b = torch.randn((n, vocab), generator=gen)
    targets = torch.randint(vocab, (n,), generator=gen)
    assert metrics.top1_agreement(a, a) == 1.0
    assert torch.equal(metrics.kl_divergence(a, a), torch.zeros(n))
    assert (metrics.kl_divergence(a, b) >= -1e-6).all()
    torch.testing.assert_close(metrics.token_nll(a, targets),
                               torch.nn.functional.cross_entropy(a, targets, reduction="none"))
    same = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    assert metrics.top1_agreement(a, b) == pytest.approx(same)


def test_quantile_matches_sorted_values():
    values = torch.arange(11, dtype=torch.float32)
    assert metrics.quantile(values, 0.1) == pytest.approx(1.0)


@pytest.mark.parametrize("methods, budgets, blocks", [
    (["topk"], [0], [16]),
    (["dense"], [64], [16]),
    (["blocktopk"], [64], [12]),
    (["blocktopk"], [40], [16]),
])
def test_bad_configs(methods, budgets, blocks):
    with pytest.raises(InputError):
        build_configs(methods, budgets, blocks)


def test_configs_cover_methods_blocks_and_budgets():
    configs = build_configs(["topk", "blocktopk"], [64, 128], [8, 16, 32])
    assert len(configs) == 2 + 2 * 3
    assert {c.block_size for c in configs if c.method == "blocktopk"} == {8, 16, 32}
