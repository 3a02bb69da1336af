"""CPU tests of the paged KV cache and the torch reference decode (hypothesis, small shapes)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kinetics.attention import (  # noqa: E402
    PagedKVCache,
    blocktopk_decode,
    dense_decode,
    masked_decode,
    reference,
    select_pages,
    topk_decode,
    topk_token_mask,
)
from kinetics.attention.reference import page_mask_to_tokens  # noqa: E402
from kinetics.errors import InputError  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def problems(draw, dtype=torch.float32):
    """A random ragged batch in a paged cache (random page order) and a query."""
    batch = draw(st.integers(1, 3))
    kv_heads = draw(st.sampled_from([1, 2]))
    group = draw(st.sampled_from([1, 2, 4]))
    dim = draw(st.sampled_from([4, 8, 16]))
    page_size = draw(st.sampled_from([1, 2, 4, 8, 16]))
    lens = draw(st.lists(st.integers(1, 70), min_size=batch, max_size=batch))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.5, 1.0, 3.0]))
    gen = torch.Generator().manual_seed(seed)
    t = max(lens)
    keys = torch.randn((batch, t, kv_heads, dim), generator=gen) * scale
    values = torch.randn((batch, t, kv_heads, dim), generator=gen)
    q = torch.randn((batch, kv_heads * group, dim), generator=gen) * scale
    cache = PagedKVCache.from_dense(keys, values, page_size=page_size, seq_lens=lens,
                                    page_order="random", seed=seed, dtype=dtype)
    return cache, q.to(dtype), keys, values, lens


def _selected_values(cache, token_mask):
    _, values, valid = cache.padded()
    return values.to(torch.float32), valid[:, None, :] & token_mask


@SETTINGS
@given(problems())
def test_full_budget_equals_dense(problem):
    cache, q, _, _, lens = problem
    dense = dense_decode(q, cache)
    pages = int(cache.num_request_pages().max())
    for k in (pages, pages + 3):
        torch.testing.assert_close(blocktopk_decode(q, cache, k), dense, rtol=1e-5, atol=1e-5)
    for k in (max(lens), max(lens) + 5):
        torch.testing.assert_close(topk_decode(q, cache, k), dense, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(problems(), st.integers(1, 6), st.integers(1, 40))
def test_output_is_convex_combination_of_selected_values(problem, topk_pages, topk_tokens):
    cache, q, _, _, _ = problem
    group = q.shape[1] // cache.num_kv_heads
    page_mask = select_pages(q, cache, topk_pages, local_pages=1)
    masks = {
        "block": page_mask_to_tokens(page_mask, cache.page_size),
        "token": topk_token_mask(q, cache, topk_tokens),
    }
    outs = {"block": blocktopk_decode(q, cache, topk_pages, page_mask=page_mask),
            "token": topk_decode(q, cache, topk_tokens)}
    for name, mask in masks.items():
        values, sel = _selected_values(cache, mask)  # [B, H, T, D], [B, H, T]
        big = torch.finfo(torch.float32).max
        vmax = values.masked_fill(~sel[..., None], -big).amax(dim=2)  # [B, H, D]
        vmin = values.masked_fill(~sel[..., None], big).amin(dim=2)
        out = outs[name].view(q.shape[0], cache.num_kv_heads, group, -1)
        assert (out <= vmax[:, :, None] + 1e-5).all(), name
        assert (out >= vmin[:, :, None] - 1e-5).all(), name


@SETTINGS
@given(problems(), st.integers(1, 6), st.integers(1, 40))
def test_error_bounded_by_mass_outside_selection(problem, topk_pages, topk_tokens):
    """|sparse - dense| <= (softmax mass outside S) * (max v - min v), per dimension."""
    cache, q, _, _, _ = problem
    b, hq, d = q.shape
    h = cache.num_kv_heads
    keys, values, valid = cache.padded()
    logits = torch.einsum("bhgd,bhtd->bhgt", q.view(b, h, hq // h, d), keys) / d**0.5
    logits = logits.masked_fill(~valid[:, None, None, :], float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    big = torch.finfo(torch.float32).max
    vrange = (values.masked_fill(~valid[:, None, :, None], -big).amax(2)
              - values.masked_fill(~valid[:, None, :, None], big).amin(2))  # [B, H, D]
    dense = dense_decode(q, cache).view(b, h, hq // h, d)
    cases = {
        "block": (page_mask_to_tokens(select_pages(q, cache, topk_pages), cache.page_size),
                  blocktopk_decode(q, cache, topk_pages)),
        "token": (topk_token_mask(q, cache, topk_tokens), topk_decode(q, cache, topk_tokens)),
    }
    for name, (mask, out) in cases.items():
        outside = (probs * (~mask)[:, :, None, :]).sum(-1)  # [B, H, G]
        bound = outside[..., None] * vrange[:, :, None, :]
        err = (out.view(b, h, hq // h, d) - dense).abs()
        assert (err <= bound + 1e-5).all(), name


@SETTINGS
@given(problems(), st.integers(1, 5))
def test_page_permutation_gives_same_output(problem, topk_pages):
    cache, q, keys, values, lens = problem
    plain = PagedKVCache.from_dense(keys, values, page_size=cache.page_size, seq_lens=lens,
                                    page_order="sequential")
    torch.testing.assert_close(dense_decode(q, cache), dense_decode(q, plain))
    torch.testing.assert_close(blocktopk_decode(q, cache, topk_pages),
                               blocktopk_decode(q, plain, topk_pages))
    torch.testing.assert_close(topk_decode(q, cache, 7), topk_decode(q, plain, 7))


@SETTINGS
@given(st.integers(1, 3), st.sampled_from([1, 2]), st.sampled_from([1, 4, 16]),
       st.integers(1, 60), st.integers(0, 2**31 - 1),
       st.sampled_from([torch.float32, torch.bfloat16]))
def test_append_then_read_back(batch, kv_heads, page_size, tokens, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    dim = 8
    keys = torch.randn((batch, tokens, kv_heads, dim), generator=gen).to(dtype)
    values = torch.randn((batch, tokens, kv_heads, dim), generator=gen).to(dtype)
    cache = PagedKVCache(batch, kv_heads, dim, page_size=page_size, max_tokens=tokens + 3,
                         dtype=dtype, page_order="random", seed=seed)
    for t in range(tokens):
        cache.append(keys[:, t], values[:, t])
    assert cache.seq_lens.tolist() == [tokens] * batch
    tol = 0 if dtype == torch.float32 else 1e-2
    for r in range(batch):
        k, v = cache.contiguous(r)
        assert torch.equal(k, keys[r]) and torch.equal(v, values[r])
        pages = -(-tokens // page_size)
        for j in range(pages):
            chunk = keys[r, j * page_size:(j + 1) * page_size].to(torch.float32)
            mean = cache.key_means[r, :, j].to(torch.float32)
            torch.testing.assert_close(mean, chunk.mean(0), rtol=tol or 1e-6, atol=tol or 1e-6)
    # the appended cache and one built from the same tokens attend identically
    q = torch.randn((batch, kv_heads * 2, dim), generator=gen).to(dtype)
    built = PagedKVCache.from_dense(keys, values, page_size=page_size)
    torch.testing.assert_close(dense_decode(q, cache), dense_decode(q, built))


@SETTINGS
@given(problems(), st.integers(1, 6), st.integers(1, 3))
def test_selection_shape(problem, topk_pages, local_pages):
    cache, q, _, _, _ = problem
    if local_pages > topk_pages:
        with pytest.raises(InputError):
            select_pages(q, cache, topk_pages, local_pages)
        return
    mask = select_pages(q, cache, topk_pages, local_pages)
    n = cache.num_request_pages()
    for r in range(cache.batch_size):
        nr = int(n[r])
        counts = mask[r].sum(-1)
        assert (counts == min(topk_pages, nr)).all()
        assert mask[r, :, max(nr - local_pages, 0):nr].all()  # local + last page always in
        assert not mask[r, :, nr:].any()


def test_masked_decode_empty_selection_is_zero():
    cache = PagedKVCache.from_dense(torch.randn(1, 5, 1, 4), torch.randn(1, 5, 1, 4), page_size=2)
    q = torch.randn(1, 2, 4)
    out = masked_decode(q, cache, torch.zeros(1, 1, 6, dtype=torch.bool))
    assert torch.equal(out, torch.zeros_like(out))


def test_bad_inputs():
    with pytest.raises(InputError):
        PagedKVCache(1, 1, 4, page_size=12, max_tokens=8)
    cache = PagedKVCache(1, 1, 4, page_size=2, max_tokens=2)
    cache.append(torch.randn(1, 1, 4), torch.randn(1, 1, 4))
    cache.append(torch.randn(1, 1, 4), torch.randn(1, 1, 4))
    with pytest.raises(InputError):
        cache.append(torch.randn(1, 1, 4), torch.randn(1, 1, 4))
    with pytest.raises(InputError):
        dense_decode(torch.randn(1, 3, 4), PagedKVCache(1, 2, 4, max_tokens=4))


# ------------------------------------------------------------ teacher-forced (causal) form
@st.composite
def sequences(draw):
    """q, k, v of one random sequence ``[1, heads, T, dim]`` plus a page size."""
    kv_heads = draw(st.sampled_from([1, 2]))
    group = draw(st.sampled_from([1, 3]))
    dim = draw(st.sampled_from([4, 8]))
    t = draw(st.integers(1, 48))
    page_size = draw(st.sampled_from([1, 2, 4, 8, 16]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.randn((1, kv_heads * group, t, dim), generator=gen) * 2
    k = torch.randn((1, kv_heads, t, dim), generator=gen) * 2
    v = torch.randn((1, kv_heads, t, dim), generator=gen)
    return q, k, v, page_size


def _decode_at(q, k, v, pos, page_size):
    """The decode-form query and cache of position ``pos`` of a causal problem."""
    keys = k[:, :, :pos + 1].transpose(1, 2)
    values = v[:, :, :pos + 1].transpose(1, 2)
    cache = PagedKVCache.from_dense(keys, values, page_size=page_size, page_order="random")
    return q[:, :, pos], cache


@SETTINGS
@given(sequences(), st.integers(1, 60), st.integers(1, 8), st.integers(1, 3))
def test_causal_form_equals_decode_form(problem, k_tokens, topk_pages, local_pages):
    from kinetics.attention.reference import (
        causal_block_mask,
        causal_masked_attention,
        causal_topk_mask,
    )

    q, k, v, ps = problem
    topk_pages = max(topk_pages, local_pages)
    token = causal_topk_mask(q, k, k_tokens)
    block = causal_block_mask(q, k, ps, topk_pages, local_pages)
    dense = causal_masked_attention(q, k, v)
    sparse = causal_masked_attention(q, k, v, block)
    for pos in range(q.shape[2]):
        qd, cache = _decode_at(q, k, v, pos, ps)
        n = pos + 1
        assert torch.equal(topk_token_mask(qd, cache, k_tokens)[..., :n], token[:, :, pos, :n])
        pages = select_pages(qd, cache, topk_pages, local_pages)
        assert torch.equal(page_mask_to_tokens(pages, ps)[..., :n], block[:, :, pos, :n])
        torch.testing.assert_close(sparse[:, :, pos], blocktopk_decode(qd, cache, topk_pages,
                                                                       local_pages))
        torch.testing.assert_close(dense[:, :, pos], dense_decode(qd, cache))
    assert not (token | block).triu(1).any()  # no key past a query's position


# ------------------------------------------------- independent checks of the page scores
def _scores_by_hand(q, keys, lens, page_size):
    """Block scores from the dense keys ``[B, T, Hkv, D]`` with plain loops: page ``p`` of
    KV head ``h`` scores ``sum over the group's query heads g of q_g . (mean of the
    page's keys)`` (float64; -inf past the request's last page)."""
    b, hq, d = q.shape
    hkv = keys.shape[2]
    group = hq // hkv
    pages = -(-max(lens) // page_size)
    out = torch.full((b, hkv, pages), float("-inf"), dtype=torch.float64)
    for r in range(b):
        for h in range(hkv):
            for p in range(-(-lens[r] // page_size)):
                block = keys[r, p * page_size:min((p + 1) * page_size, lens[r]), h]
                mean = block.double().sum(0) / block.shape[0]
                out[r, h, p] = sum(float(q[r, h * group + g].double() @ mean)
                                   for g in range(group))
    return out


@SETTINGS
@given(problems())
def test_page_scores_are_the_group_sum_computed_by_hand(problem):
    cache, q, keys, _, lens = problem
    want = _scores_by_hand(q, keys, lens, cache.page_size)
    got = reference.page_scores(q, cache).double()
    torch.testing.assert_close(got[..., :want.shape[-1]], want, rtol=1e-5, atol=1e-5)


def test_selection_sums_the_group_where_the_per_head_max_differs():
    """Page 0 has the larger per-head maximum (10 vs 3), page 1 the larger group sum (6 vs
    1): block top-k with one scored page must choose page 1, in the decode form and in the
    teacher-forced form alike."""
    from kinetics.attention.reference import causal_block_mask

    keys = torch.tensor([[10.0, -9.0], [10.0, -9.0],  # page 0: mean (10, -9)
                         [3.0, 3.0], [3.0, 3.0],  # page 1: mean (3, 3)
                         [0.0, 0.0]])  # page 2: partial, always attended (local)
    keys = keys[None, :, None, :]  # [1, T=5, 1 KV head, D=2]
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # 2 query heads of one KV head
    cache = PagedKVCache.from_dense(keys, torch.randn_like(keys), page_size=2)
    by_hand = _scores_by_hand(q, keys, [5], 2)[0, 0]
    assert by_hand[:2].tolist() == [1.0, 6.0]
    per_head_max = torch.stack([(q[0] @ keys[0, 2 * p:2 * p + 2, 0].mean(0)).max()
                                for p in range(2)])
    assert per_head_max.argmax() == 0 and by_hand[:2].argmax() == 1  # the case discriminates
    torch.testing.assert_close(reference.page_scores(q, cache)[0, 0].double(), by_hand)
    assert select_pages(q, cache, 2, 1)[0, 0].tolist() == [False, True, True]
    block = causal_block_mask(q[:, :, None], keys.transpose(1, 2), 2, 2, 1)
    assert block[0, 0, 0].tolist() == [False, False, True, True, True]


@SETTINGS
@given(st.integers(1, 3), st.sampled_from([1, 2]), st.sampled_from([1, 2, 4]),
       st.sampled_from([1, 4, 16]), st.integers(1, 80), st.integers(1, 6),
       st.integers(0, 2**31 - 1),
       st.sampled_from([None, torch.bfloat16, torch.float8_e4m3fn]))
def test_selection_on_appended_cache_equals_dense_built(batch, kv_heads, group, page_size,
                                                         tokens, topk_pages, seed, means):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn((batch, tokens, kv_heads, 8), generator=gen) * 2
    values = torch.randn((batch, tokens, kv_heads, 8), generator=gen)
    appended = PagedKVCache(batch, kv_heads, 8, page_size=page_size, max_tokens=tokens,
                            page_order="random", seed=seed, page_means_dtype=means)
    for t in range(tokens):
        appended.append(keys[:, t], values[:, t])
    built = PagedKVCache.from_dense(keys, values, page_size=page_size, page_means_dtype=means)
    assert appended.key_means.dtype == built.key_means.dtype == (means or torch.float32)
    q = torch.randn((batch, kv_heads * group, 8), generator=gen)
    for local in range(1, min(topk_pages, 2) + 1):
        assert torch.equal(select_pages(q, appended, topk_pages, local),
                           select_pages(q, built, topk_pages, local))
    torch.testing.assert_close(blocktopk_decode(q, appended, topk_pages),
                               blocktopk_decode(q, built, topk_pages))
