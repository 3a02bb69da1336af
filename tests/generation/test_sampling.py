"""next_tokens: greedy, temperature and top-p by inverse CDF, checked against an
independent numpy reading of the nucleus."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from kinetics.generation.sampling import next_tokens  # noqa: E402

logit = st.floats(-12, 12, allow_nan=False, width=32)
temperature = st.floats(0.05, 5.0)
top_p = st.floats(1e-6, 1.0, exclude_min=True)
uniform = st.floats(0.0, 1.0, exclude_max=True)


@st.composite
def batches(draw, max_rows: int = 6, max_vocab: int = 40):
    """(logits [B, V] float32, uniforms [B] float64)."""
    vocab = draw(st.integers(1, max_vocab))
    rows = draw(st.integers(1, max_rows))
    values = draw(st.lists(st.lists(logit, min_size=vocab, max_size=vocab), min_size=rows,
                           max_size=rows))
    uniforms = draw(st.lists(uniform, min_size=rows, max_size=rows))
    return (torch.tensor(values, dtype=torch.float32),
            torch.tensor(uniforms, dtype=torch.float64))


def softmax(logits: np.ndarray, temp: float) -> np.ndarray:
    z = logits.astype(np.float64) / temp
    e = np.exp(z - z.max())
    return e / e.sum()


def nucleus(probs: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """(token ids of the nucleus in drawing order, their renormalised probabilities):
    the most likely tokens (ties by id) up to the first whose cumulative mass reaches p."""
    order = np.lexsort((np.arange(len(probs)), -probs))
    cum = np.cumsum(probs[order])
    size = int(np.searchsorted(cum >= p, True)) + 1 if (cum >= p).any() else len(probs)
    kept = order[:size]
    return kept, probs[kept] / probs[kept].sum()


@given(batches(), top_p)
def test_temperature_zero_is_the_argmax_with_the_lowest_id_on_ties(batch, p):
    logits, uniforms = batch
    chosen = next_tokens(logits, uniforms, 0.0, p)
    assert chosen.dtype == torch.int64
    for row, token in zip(logits.numpy(), chosen.tolist(), strict=True):
        assert token == int(np.flatnonzero(row == row.max())[0])
    assert torch.equal(next_tokens(logits, None, 0.0, p), chosen)  # uniforms are ignored


@given(batches(), temperature)
def test_a_vanishing_top_p_keeps_only_the_most_likely_token(batch, temp):
    """The most likely token (logits 1e-32 apart are one probability in float64, so
    any of them; exact ties go to the lowest id)."""
    logits, uniforms = batch
    chosen = next_tokens(logits, uniforms, temp, 1e-12)
    for row, token in zip(logits.numpy(), chosen.tolist(), strict=True):
        probs = softmax(row, temp)
        assert probs[token] >= probs.max() * (1 - 1e-12)
    tied = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0]])
    assert next_tokens(tied, torch.tensor([0.99]), temp, 1e-12).tolist() == [1]


@given(batches(), temperature, top_p)
def test_a_sampled_token_is_always_inside_the_nucleus(batch, temp, p):
    logits, uniforms = batch
    chosen = next_tokens(logits, uniforms, temp, p)
    for row, token in zip(logits.numpy(), chosen.tolist(), strict=True):
        probs = softmax(row, temp)
        # in the nucleus: the tokens strictly more likely than it hold less than p
        assert probs[probs > probs[token]].sum() < p + 1e-12
        assert 0 <= token < len(row)


@settings(max_examples=50)
@given(batches(), temperature, top_p)
def test_same_uniforms_same_tokens_and_rows_are_independent(batch, temp, p):
    logits, uniforms = batch
    chosen = next_tokens(logits, uniforms, temp, p)
    assert torch.equal(chosen, next_tokens(logits.clone(), uniforms.clone(), temp, p))
    for b in range(len(logits)):  # each row alone gives its token
        alone = next_tokens(logits[b:b + 1], uniforms[b:b + 1], temp, p)
        assert int(alone) == int(chosen[b])
    perm = torch.randperm(len(logits), generator=torch.Generator().manual_seed(len(logits)))
    assert torch.equal(next_tokens(logits[perm], uniforms[perm], temp, p), chosen[perm])


@given(st.lists(logit, min_size=2, max_size=30), temperature, top_p, uniform, uniform)
def test_a_larger_uniform_never_draws_a_more_likely_token(row, temp, p, u1, u2):
    """Inverse CDF: the token's rank in the drawing order is monotone in the uniform."""
    lo, hi = sorted((u1, u2))
    logits = torch.tensor([row, row], dtype=torch.float32)
    a, b = next_tokens(logits, torch.tensor([lo, hi], dtype=torch.float64), temp, p).tolist()
    order = list(np.lexsort((np.arange(len(row)), -softmax(np.array(row), temp))))
    assert order.index(a) <= order.index(b)


def test_uniforms_at_the_ends_of_the_unit_interval():
    logits = torch.tensor([[0.0, 2.0, 1.0, -1.0]] * 2)
    p = 0.9
    chosen = next_tokens(logits, torch.tensor([0.0, np.nextafter(1.0, 0.0)]), 1.0, p)
    kept, _ = nucleus(softmax(logits[0].numpy(), 1.0), p)
    assert chosen.tolist() == [kept[0], kept[-1]] == [1, 0]
    with pytest.raises(ValueError, match="uniform"):
        next_tokens(logits, None, 0.5, 1.0)


GRID = 20_000


@settings(max_examples=40)
@given(st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=1, max_size=8),
       temperature, st.floats(0.05, 1.0))
def test_grid_frequencies_equal_the_renormalised_nucleus_softmax(row, temp, p):
    """``GRID`` uniforms on a regular grid (a deterministic quadrature): every token is
    drawn as often as its nucleus probability says, within one grid point."""
    probs = softmax(np.array(row, dtype=np.float32), temp)
    cum = np.cumsum(np.sort(probs)[::-1])
    assume(np.all(np.abs(cum - p) > 1e-9))  # no tie between float roundings at the cut
    gaps = np.diff(np.sort(probs))
    assume(np.all((gaps == 0) | (gaps > 1e-12)))  # numpy's order of the tokens is torch's
    logits = torch.tensor([row], dtype=torch.float32).expand(GRID, -1)
    uniforms = (torch.arange(GRID, dtype=torch.float64) + 0.5) / GRID
    chosen = next_tokens(logits, uniforms, temp, p).numpy()
    counts = np.bincount(chosen, minlength=len(row))
    kept, q = nucleus(probs, p)
    expected = np.zeros(len(row))
    expected[kept] = q * GRID
    assert np.all(np.abs(counts - expected) <= 1.0 + 1e-6), (counts, expected)
    assert set(np.flatnonzero(counts)) <= set(kept.tolist())


# --- counter-based uniforms (the paged engine's draws) --------------------------------

from kinetics.generation.sampling import token_uniforms  # noqa: E402

SEEDS = st.integers(0, 2**63 - 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(SEEDS, st.integers(0, 2**20)), min_size=1, max_size=40))
def test_a_draw_depends_on_its_seed_and_index_only(pairs):
    seeds = torch.tensor([s for s, _ in pairs])
    index = torch.tensor([i for _, i in pairs])
    together = token_uniforms(seeds, index)
    alone = torch.cat([token_uniforms(seeds[j:j + 1], index[j:j + 1]) for j in range(len(pairs))])
    assert torch.equal(together, alone)
    assert together.dtype == torch.float64
    assert bool(((together >= 0) & (together < 1)).all())


def test_draws_look_uniform_and_differ_by_seed_and_index():
    n = 200_000
    u = token_uniforms(torch.arange(n), torch.zeros(n, dtype=torch.int64)).numpy()
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    expected = n / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 60  # 19 degrees of freedom: p ~ 1e-6
    v = token_uniforms(torch.zeros(n, dtype=torch.int64), torch.arange(n)).numpy()
    assert abs(float(np.corrcoef(u[:-1], u[1:])[0, 1])) < 0.01
    assert abs(float(v.mean()) - 0.5) < 0.005
    assert len(np.unique(u)) > n - 10
