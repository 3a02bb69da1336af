"""PagedKVCache over a shared page table: ``write`` stores what ``append``/``extend``
store (pages, page means); ``rows_view`` reads as a cache of those rows alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from kinetics.attention import PagedKVCache, reference  # noqa: E402
from kinetics.errors import InputError  # noqa: E402

H, D = 2, 8


def shared(batch: int, page_size: int, max_tokens: int, num_pages: int) -> PagedKVCache:
    pages = -(-max_tokens // page_size)
    table = torch.full((batch, pages), -1, dtype=torch.int32)
    return PagedKVCache(batch, H, D, page_size=page_size, max_tokens=max_tokens,
                        num_pages=num_pages, page_table=table,
                        seq_lens=torch.zeros(batch, dtype=torch.int64))


@settings(max_examples=60, deadline=None)
@given(lens=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       page_size=st.sampled_from([1, 4, 8]), chunk=st.integers(1, 16), seed=st.integers(0, 99))
def test_write_stores_what_extend_and_append_store(lens, page_size, chunk, seed):
    """Prompts written in chunks then one decode token per row, into pages mapped in a
    scattered order, equal a cache filled by extend + append."""
    gen = torch.Generator().manual_seed(seed)
    batch, longest = len(lens), max(lens) + 1
    keys = torch.randn(batch, longest, H, D, generator=gen)
    values = torch.randn(batch, longest, H, D, generator=gen)
    ref = PagedKVCache(batch, H, D, page_size=page_size, max_tokens=longest)
    for r, n in enumerate(lens):
        ref.extend(r, keys[r, :n], values[r, :n])
    ref.append(keys[torch.arange(batch), torch.tensor(lens)],
               values[torch.arange(batch), torch.tensor(lens)])
    per_row = -(-longest // page_size)
    cache = shared(batch, page_size, longest, batch * per_row)
    order = torch.randperm(batch * per_row, generator=gen).to(torch.int32)
    cache.page_table.copy_(order.view(batch, per_row))
    for r, n in enumerate(lens):
        for start in range(0, n, chunk):
            pos = torch.arange(start, min(n, start + chunk))
            cache.write(torch.full_like(pos, r), pos, keys[r, pos], values[r, pos])
    rows, pos = torch.arange(batch), torch.tensor(lens)
    cache.write(rows, pos, keys[rows, pos], values[rows, pos])
    cache.seq_lens.copy_(pos + 1)
    for r in range(batch):
        for a, b in zip(cache.contiguous(r), ref.contiguous(r), strict=True):
            assert torch.equal(a, b)
    torch.testing.assert_close(cache.key_means, ref.key_means, rtol=1e-6, atol=1e-6)
    q = torch.randn(batch, 2 * H, D, generator=gen)
    torch.testing.assert_close(reference.blocktopk_decode(q, cache, 2, 1),
                               reference.blocktopk_decode(q, ref, 2, 1))


def test_rows_view_reads_as_a_cache_of_those_rows():
    gen = torch.Generator().manual_seed(0)
    keys, values = torch.randn(3, 20, H, D, generator=gen), torch.randn(3, 20, H, D,
                                                                        generator=gen)
    whole = PagedKVCache.from_dense(keys, values, page_size=4, seq_lens=[20, 7, 13],
                                    page_order="random")
    rows = torch.tensor([2, 0])
    view = whole.rows_view(rows)
    alone = PagedKVCache.from_dense(keys[rows], values[rows], page_size=4, seq_lens=[13, 20])
    q = torch.randn(2, 2 * H, D, generator=gen)
    for fn in (lambda c: reference.dense_decode(q, c),
               lambda c: reference.blocktopk_decode(q, c, 2, 1)):
        torch.testing.assert_close(fn(view), fn(alone))


def test_write_to_an_unmapped_page_and_a_half_shared_cache_are_refused():
    cache = shared(1, 4, 8, 2)
    with pytest.raises(InputError, match="not mapped"):
        cache.write(torch.tensor([0]), torch.tensor([0]), torch.zeros(1, H, D),
                    torch.zeros(1, H, D))
    with pytest.raises(ValueError, match="both"):
        PagedKVCache(1, H, D, max_tokens=8, page_table=torch.zeros(1, 1, dtype=torch.int32))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), page_size=st.sampled_from([1, 4, 8]), chunk=st.integers(1, 16),
       copies=st.integers(1, 3), seed=st.integers(0, 99))
def test_write_prompt_stores_what_write_stores(n, page_size, chunk, copies, seed):
    """One prompt written in chunks into several rows (scattered pages): the same pages
    and page means as ``write`` of the same tokens row by row."""
    gen = torch.Generator().manual_seed(seed)
    keys, values = torch.randn(n, H, D, generator=gen), torch.randn(n, H, D, generator=gen)
    per_row = -(-n // page_size)
    caches = [shared(copies + 1, page_size, n, (copies + 1) * per_row) for _ in range(2)]
    order = torch.randperm((copies + 1) * per_row, generator=gen).to(torch.int32)
    for cache in caches:
        cache.page_table.copy_(order.view(copies + 1, per_row))
    rows = torch.arange(1, copies + 1)  # row 0 stays empty
    for start in range(0, n, chunk):
        pos = torch.arange(start, min(n, start + chunk))
        caches[0].write_prompt(rows, start, keys[pos], values[pos])
        for r in rows:
            caches[1].write(r.expand(len(pos)), pos, keys[pos], values[pos])
    for name in ("k_pages", "v_pages", "key_means"):
        assert torch.equal(getattr(caches[0], name), getattr(caches[1], name)), name


@settings(max_examples=40, deadline=None)
@given(lens=st.lists(st.integers(0, 30), min_size=1, max_size=5),
       active=st.lists(st.booleans(), min_size=5, max_size=5),
       page_size=st.sampled_from([1, 4, 8]), seed=st.integers(0, 99))
def test_write_step_writes_active_rows_and_leaves_inactive_ones_untouched(lens, active,
                                                                          page_size, seed):
    """One token per active row, as ``write`` stores it (pages and page means); an
    inactive row's pages and means stay as they were and its token lands on the spare
    page (the last one, owned by no row)."""
    gen = torch.Generator().manual_seed(seed)
    b = len(lens)
    act = torch.tensor(active[:b])
    per_row = -(-31 // page_size)
    caches = [shared(b, page_size, 31, b * per_row + 1) for _ in range(2)]
    order = torch.randperm(b * per_row, generator=gen).to(torch.int32)
    for cache in caches:
        cache.page_table.copy_(order.view(b, per_row))
        cache.k_pages.normal_(generator=gen)
        cache.recompute_means()
    caches[1].k_pages.copy_(caches[0].k_pages)
    caches[1].key_means.copy_(caches[0].key_means)
    k, v = torch.randn(b, H, D, generator=gen), torch.randn(b, H, D, generator=gen)
    positions = torch.tensor(lens)
    spare = b * per_row
    caches[0].write_step(positions, act, spare, k, v)
    rows = torch.arange(b)[act]
    if len(rows):
        caches[1].write(rows, positions[act], k[act], v[act])
    owned = slice(0, spare)
    assert torch.equal(caches[0].k_pages[owned], caches[1].k_pages[owned])
    assert torch.equal(caches[0].v_pages[owned], caches[1].v_pages[owned])
    torch.testing.assert_close(caches[0].key_means, caches[1].key_means, rtol=0, atol=1e-6)
    idle = torch.arange(b)[~act].tolist()
    for slot in {int(positions[r]) % page_size for r in idle}:  # rows may share a slot:
        stored = caches[0].k_pages[spare, :, slot]               # one of theirs is there
        assert any(torch.equal(stored, k[r]) for r in idle
                   if int(positions[r]) % page_size == slot)
