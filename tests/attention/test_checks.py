"""The selection check on CPU: the reference's own selection passes, broken ones fail."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kinetics.attention import PagedKVCache, reference  # noqa: E402
from kinetics.attention.checks import check_selection  # noqa: E402


def _problem(seed: int, batch: int, hkv: int, group: int, page_size: int):
    gen = torch.Generator().manual_seed(seed)
    lens = torch.randint(6 * page_size, 12 * page_size, (batch,), generator=gen).tolist()
    t = max(lens)
    keys = torch.randn((batch, t, hkv, 16), generator=gen)
    values = torch.randn((batch, t, hkv, 16), generator=gen)
    cache = PagedKVCache.from_dense(keys, values, page_size=page_size, seq_lens=lens,
                                    page_order="random", seed=seed)
    q = torch.randn((batch, hkv * group, 16), generator=gen)
    return cache, q


SHAPES = dict(seed=st.integers(0, 10_000), batch=st.integers(1, 3), hkv=st.integers(1, 2),
              group=st.integers(1, 3), page_size=st.sampled_from([4, 8]),
              k=st.integers(2, 6), local=st.integers(1, 2))


@settings(max_examples=25)
@given(**SHAPES)
def test_reference_selection_passes(seed, batch, hkv, group, page_size, k, local):
    cache, q = _problem(seed, batch, hkv, group, page_size)
    want = reference.select_pages(q, cache, k, local)
    check = check_selection(want, q, cache, k, local)
    assert check.passed and check.identical_fraction == 1.0


@settings(max_examples=25)
@given(**SHAPES)
def test_worst_page_instead_of_best_fails(seed, batch, hkv, group, page_size, k, local):
    cache, q = _problem(seed, batch, hkv, group, page_size)
    got = reference.select_pages(q, cache, k, local).clone()
    scores = reference.page_scores(q, cache)
    n = int(cache.num_request_pages()[0])
    cand = scores[0, 0, :n - local]
    best, worst = int(cand.argmax()), int(cand.argmin())
    assume(k > local and not bool(got[0, 0, worst]))  # a scored page to swap for one left out
    assume(bool(cand[best] - cand[worst] > 1e-2 * cand.abs().max() + 1e-5))  # not a tie
    got[0, 0, best], got[0, 0, worst] = False, True
    check = check_selection(got, q, cache, k, local)
    assert check.counts_ok and check.locals_ok and not check.scores_ok and not check.passed


def test_missing_local_page_and_wrong_count_fail():
    cache, q = _problem(0, 2, 1, 2, 4)
    want = reference.select_pages(q, cache, 4, 1)
    n = int(cache.num_request_pages()[1])
    no_local = want.clone()
    no_local[1, 0, n - 1] = False
    check = check_selection(no_local, q, cache, 4, 1)
    assert not check.locals_ok and not check.counts_ok and not check.passed
    past_end = want.clone()
    past_end[1, 0, n] = True  # a page past the request's last
    assert not check_selection(past_end, q, cache, 4, 1).passed
