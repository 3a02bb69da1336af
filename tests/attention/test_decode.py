"""GPU tests: flashinfer dense, the Triton dense paged decode, block top-k (the fused kernel; the separate path with both
top-k kernels and the Triton attention) and the selection kernels vs the torch reference.

Marked ``gpu``; skipped with the reason where there is no CUDA GPU, triton or
flashinfer. Inputs are fresh random draws per case (never zeros); outputs are
poisoned with NaN before each run. head_dim is 128 throughout so flashinfer
JIT-compiles one decode module.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinetics.bench import spec as bench

pytestmark = pytest.mark.gpu

_OK, _WHY = bench.gpu_available()
if not _OK:
    pytest.skip(f"GPU tests need a CUDA GPU, triton and flashinfer: {_WHY}",
                allow_module_level=True)

import torch  # noqa: E402

from kinetics.attention import PagedKVCache, reference  # noqa: E402
from kinetics.attention.checks import check_selection  # noqa: E402
from kinetics.attention.decode import (  # noqa: E402
    FlashinferDenseDecode,
    FusedBlockTopkDecode,
    TritonPagedDecode,
    build_blocktopk_decode,
)
from kinetics.attention.select import PageSelector  # noqa: E402
from kinetics.bench.grid import GridSpec, grid_cells  # noqa: E402
from kinetics.bench.timing import capture_graph  # noqa: E402

DIM = 128
CASES = [  # batch, q heads, kv heads, page size, lens (tokens), topk pages, local pages
    (4, 4, 1, 16, [1000, 1000, 1000, 1000], 16, 1),
    (3, 8, 2, 16, [517, 800, 1023], 8, 2),
    (5, 4, 1, 8, [257, 300, 4096, 999, 1111], 32, 1),
    (2, 32, 8, 32, [2048, 1500], 12, 3),
]


def _problem(batch, hq, hkv, page_size, lens, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    t = max(lens)
    keys = torch.randn((batch, t, hkv, DIM), generator=gen, device="cuda")
    values = torch.randn((batch, t, hkv, DIM), generator=gen, device="cuda")
    cache = PagedKVCache.from_dense(keys, values, page_size=page_size, seq_lens=lens,
                                    dtype=torch.bfloat16, page_order="random", seed=seed)
    q = torch.randn((batch, hq, DIM), generator=gen, device="cuda").to(torch.bfloat16)
    return cache, q


def _rel(out, ref):
    out, ref = out.float(), ref.float()
    return float((out - ref).norm() / ref.norm())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tensor_cores", [True, False], ids=["tc-fa2", "cuda-cores"])
def test_flashinfer_dense_matches_reference(case, seed, tensor_cores):
    batch, hq, hkv, ps, lens, _, _ = case
    cache, q = _problem(batch, hq, hkv, ps, lens, seed)
    dec = FlashinferDenseDecode(cache, hq, tensor_cores)
    out = torch.full_like(q, float("nan"))
    dec(q, out)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all(), "output not fully written"
    assert _rel(out, reference.dense_decode(q, cache)) < 1e-2


TOPK = ("bitonic", "flashinfer")
ATTENTION = {"default": {}, "one-split": dict(splits=1, tile_pages=2),
             "splits-2x2": dict(splits=2, tile_pages=2)}


def _assert_selection_ok(got, q, cache, k, local):
    """Same pages as torch.topk, except swaps between pages whose scores tie (1e-4 rel)."""
    check = check_selection(got, q, cache, k, local, rel_tol=1e-4)
    assert check.passed, check


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("topk", TOPK)
@pytest.mark.parametrize("attention", list(ATTENTION))
def test_blocktopk_matches_reference(case, seed, topk, attention):
    batch, hq, hkv, ps, lens, k, local = case
    cache, q = _problem(batch, hq, hkv, ps, lens, seed)
    dec = build_blocktopk_decode(cache, hq, k, local, topk=topk, impl="separate",
                                 **ATTENTION[attention])
    out = torch.full_like(q, float("nan"))
    for _ in range(2):  # twice: a step must not depend on the previous one's scratch
        out.fill_(float("nan"))
        dec(q, out)
        torch.cuda.synchronize()
    assert torch.isfinite(out).all(), "output not fully written"
    got = dec.selected_page_mask()
    _assert_selection_ok(got, q, cache, k, local)
    ref = reference.blocktopk_decode(q, cache, k, local, page_mask=got)
    assert _rel(out, ref) < 1e-2
    if bool((got == reference.select_pages(q, cache, k, local)).all()):
        assert _rel(out, reference.blocktopk_decode(q, cache, k, local)) < 1e-2


FUSED = {"default": {}, "one-split": dict(splits=1), "two-splits": dict(splits=2),
         "four-splits-two-launches": dict(splits=4, one_launch=False),
         "chunks-of-16": dict(splits=2, chunk_pages=16, tile_pages=1),
         "eight-warps": dict(num_warps=8),
         "wide-rows-pipeline": dict(block_p=64, num_stages=5)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("launch", list(FUSED))
def test_fused_matches_reference(case, seed, launch):
    batch, hq, hkv, ps, lens, k, local = case
    cache, q = _problem(batch, hq, hkv, ps, lens, seed)
    dec = FusedBlockTopkDecode(cache, hq, k, local, **FUSED[launch])
    outs = []
    for _ in range(3):  # a step must not depend on the last one's scratch or counters
        out = torch.full_like(q, float("nan"))
        dec(q, out)
        torch.cuda.synchronize()
        outs.append(out)
    assert torch.isfinite(outs[0]).all(), "output not fully written"
    assert all(torch.equal(outs[0], o) for o in outs[1:]), "not deterministic"
    got = dec.selected_page_mask()
    _assert_selection_ok(got, q, cache, k, local)
    ref = reference.blocktopk_decode(q, cache, k, local, page_mask=got)
    assert _rel(outs[0], ref) < 1e-2
    if bool((got == reference.select_pages(q, cache, k, local)).all()):
        assert _rel(outs[0], reference.blocktopk_decode(q, cache, k, local)) < 1e-2


def test_fused_in_a_cuda_graph_replays_deterministically():
    """One launch with several splits (spinning rows, counters reset by the merge): graph
    replays give the eager output bit for bit."""
    cache, q = _problem(3, 8, 2, 16, [4000, 3001, 2500], 7)
    dec = FusedBlockTopkDecode(cache, 8, 32, 1, splits=4)
    assert dec.launch.one_launch and dec.launch.splits == 4
    eager = torch.empty_like(q)
    dec(q, eager)
    out = torch.full_like(q, float("nan"))
    graph = capture_graph(lambda: dec(q, out))
    for _ in range(5):
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, eager)
    assert (dec.counters == 0).all()


@pytest.mark.parametrize("splits, one_launch", [(1, None), (4, True), (4, False)])
def test_fused_phase_stamps_are_ordered_and_change_nothing(splits, one_launch):
    """record_phases: every program stamps all six boundaries, in order on its own SM
    clock and on the global timer, and the output and selection equal the unstamped
    kernel's bit for bit."""
    cache, q = _problem(3, 8, 2, 16, [4000, 3001, 2500], 11)
    kw = dict(splits=splits, one_launch=one_launch)
    plain, stamped = (FusedBlockTopkDecode(cache, 8, 32, 1, record_phases=r, **kw)
                      for r in (False, True))
    assert plain.phase_stamps is None
    outs = [torch.full_like(q, float("nan")) for _ in range(2)]
    plain(q, outs[0])
    stamped(q, outs[1])
    torch.cuda.synchronize()
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(plain.pages, stamped.pages)
    st_ = stamped.phase_stamps
    assert st_.shape == (6, splits, 6, 2)
    assert (st_ > 0).all(), "a program left a boundary unstamped"
    assert (st_[:, :, 1:] >= st_[:, :, :-1]).all(), "stamps out of order"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("splits", [None, 1, 8])
def test_triton_paged_dense_matches_reference(case, splits):
    batch, hq, hkv, page_size, lens, _, _ = case
    cache, q = _problem(batch, hq, hkv, page_size, lens, 3)
    out = torch.full_like(q, float("nan"))
    TritonPagedDecode(cache, hq, splits=splits)(q, out)
    assert _rel(out, reference.dense_decode(q, cache)) < 2e-2


def test_triton_paged_dense_in_a_cuda_graph_follows_changing_lengths():
    """Recorded once, replayed after the lengths and the table changed: each replay
    attends each request's current tokens (the engine's graphed step relies on it)."""
    cache, q = _problem(3, 8, 2, 16, [4000, 3001, 2500], 5)
    dec = TritonPagedDecode(cache, 8)
    out = torch.full_like(q, float("nan"))
    graph = capture_graph(lambda: dec(q, out))
    for lens in ([4000, 3001, 2500], [17, 3001, 1], [1000, 2, 2499]):
        cache.seq_lens.copy_(torch.tensor(lens))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert _rel(out, reference.dense_decode(q, cache)) < 2e-2, lens


@st.composite
def fused_cases(draw):
    page_size = draw(st.sampled_from([16, 32]))
    batch = draw(st.sampled_from([1, 2, 3, 5, 7]))
    lens = draw(st.lists(st.integers(1, 3000), min_size=batch, max_size=batch))
    return dict(page_size=page_size, lens=lens, hkv=draw(st.sampled_from([1, 2])),
                group=draw(st.sampled_from([1, 4, 5, 8])),
                k=draw(st.sampled_from([1, 2, 8, 64, 200])), local=draw(st.integers(1, 2)),
                splits=draw(st.sampled_from([None, 1, 2, 8])),
                tied=draw(st.lists(st.integers(1, 60), max_size=6, unique=True)),
                fp8=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fused_cases())
def test_fused_matches_reference_on_drawn_shapes(c):
    """GQA groups 1/4/5/8, page sizes 16/32, ragged contexts not a multiple of the page
    size, budgets beyond some contexts, tied page scores (copies of page 0), batch 1 and
    odd batches, bf16 or fp8 page means."""
    k = max(c["k"], c["local"])
    ps, lens = c["page_size"], c["lens"]
    gen = torch.Generator(device="cuda").manual_seed(c["seed"])
    b, t = len(lens), max(lens)
    keys = torch.randn((b, t, c["hkv"], DIM), generator=gen, device="cuda")
    for j in c["tied"]:
        if (j + 1) * ps <= t:
            keys[:, j * ps:(j + 1) * ps] = keys[:, :ps]
    values = torch.randn((b, t, c["hkv"], DIM), generator=gen, device="cuda")
    cache = PagedKVCache.from_dense(
        keys, values, page_size=ps, seq_lens=lens, dtype=torch.bfloat16, page_order="random",
        seed=c["seed"] % 1000, page_means_dtype=torch.float8_e4m3fn if c["fp8"] else None)
    hq = c["hkv"] * c["group"]
    q = torch.randn((b, hq, DIM), generator=gen, device="cuda").to(torch.bfloat16)
    dec = FusedBlockTopkDecode(cache, hq, k, c["local"], splits=c["splits"])
    out = torch.full_like(q, float("nan"))
    dec(q, out)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()
    got = dec.selected_page_mask()
    _assert_selection_ok(got, q, cache, k, c["local"])
    ref = reference.blocktopk_decode(q, cache, k, c["local"], page_mask=got)
    assert _rel(out, ref) < 1e-2


def _means_only_cache(batch, hkv, page_size, lens, seed):
    """A cache whose page means are random (scoring reads only them; K/V stay zero)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    cache = PagedKVCache(batch, hkv, DIM, page_size=page_size, max_tokens=max(lens),
                         dtype=torch.bfloat16, device="cuda")
    perm = torch.randperm(cache.num_pages, generator=torch.Generator().manual_seed(seed))
    cache.page_table.copy_(perm.view(batch, -1).to(torch.int32))
    cache.seq_lens.copy_(torch.tensor(lens))
    cache.key_means.normal_(generator=gen)
    return cache, gen


def _selected_mask(pages, cache, k):
    """bool [batch, kv_heads, max_pages] of the physical ids ``pages`` [rows, k]; each
    row's ids must be distinct pages of its request."""
    b, h = cache.batch_size, cache.num_kv_heads
    got = torch.zeros((b, h, cache.page_table.shape[1]), dtype=torch.bool, device="cuda")
    ids = pages.view(b, h, k).long()
    for r in range(b):
        n = int(cache.num_request_pages()[r])
        inverse = torch.full((cache.num_pages,), -1, dtype=torch.long, device="cuda")
        inverse[cache.page_table[r, :n].long()] = torch.arange(n, device="cuda")
        pos = inverse[ids[r]]
        assert (pos >= 0).all(), f"request {r}: a listed page is not its own"
        assert (pos.sort(-1).values.diff(dim=-1) > 0).all(), f"request {r}: a page twice"
        got[r].scatter_(-1, pos, True)
    return got


@pytest.mark.parametrize("page_size,lens,k,local", [
    (16, [16384] * 8, 64, 1),
    (16, [1024, 5000, 16383, 777], 48, 4),
    (8, [4096, 2048], 100, 1),
    (64, [65536, 32768], 64, 2),
])
@pytest.mark.parametrize("hq,hkv", [(4, 1), (8, 2)])
@pytest.mark.parametrize("topk", TOPK)
@pytest.mark.parametrize("variant", [dict(), dict(block_p=32, score_warps=4, select_warps=4)],
                         ids=["default", "small-blocks"])
def test_selection_kernel_picks_topk_pages(page_size, lens, k, local, hq, hkv, topk, variant):
    batch = len(lens)
    cache, gen = _means_only_cache(batch, hkv, page_size, lens, sum(lens) + k)
    q = torch.randn((batch, hq, DIM), generator=gen, device="cuda").to(torch.bfloat16)
    sel = PageSelector(batch, hq, hkv, DIM, page_size, cache.page_table.shape[1], k, local,
                       device="cuda", topk=topk, **variant)
    out = torch.full((batch * hkv, k), -1, dtype=torch.int32, device="cuda")
    sel(q, cache.key_means, cache.page_table, cache.seq_lens, out)
    torch.cuda.synchronize()
    assert (out >= 0).all(), "page list not fully written"
    got = _selected_mask(out, cache, k)
    scores = reference.page_scores(q, cache)
    n = cache.num_request_pages()
    for b in range(batch):
        torch.testing.assert_close(sel.scores.view(batch, hkv, -1)[b, :, :int(n[b]) - local],
                                   scores[b, :, :int(n[b]) - local], rtol=1e-4, atol=1e-4)
    assert (sel.row_pages.view(batch, hkv) == n[:, None]).all()
    _assert_selection_ok(got, q, cache, k, local)


def _grid_shapes():
    """(q heads, kv heads, context, batch, pages) of the grid's cells up to batch 64."""
    cells, _ = grid_cells(GridSpec(batch_sizes=(1, 4, 16, 64)))
    out = []
    for c in cells:
        hq, hkv = bench.DecodeSpec(model=c.model, tp=8).local_heads()
        out.append((hq, hkv, c.context, c.batch_size, c.topk_pages))
    return sorted(set(out))


@pytest.mark.parametrize("hq,hkv,context,batch,k", _grid_shapes())
@pytest.mark.parametrize("topk", TOPK)
def test_selection_on_grid_cells(hq, hkv, context, batch, k, topk):
    """Selection == torch.topk up to ties on every grid shape (batch <= 64), both kernels."""
    cache, gen = _means_only_cache(batch, hkv, 16, [context] * batch, context + batch + k)
    q = torch.randn((batch, hq, DIM), generator=gen, device="cuda").to(torch.bfloat16)
    sel = PageSelector(batch, hq, hkv, DIM, 16, cache.page_table.shape[1], k, 1,
                       device="cuda", topk=topk)
    out = torch.full((batch * hkv, k), -1, dtype=torch.int32, device="cuda")
    sel(q, cache.key_means, cache.page_table, cache.seq_lens, out)
    torch.cuda.synchronize()
    _assert_selection_ok(_selected_mask(out, cache, k), q, cache, k, 1)


@pytest.mark.parametrize("hq,hkv,context,batch,k", _grid_shapes())
@pytest.mark.parametrize("means", ["bf16", "fp8"])
def test_fused_selection_on_grid_cells(hq, hkv, context, batch, k, means):
    """The fused kernel's selection == torch.topk up to ties on every grid shape (batch <=
    64) with its default launch, each listed page once, bf16 and fp8 page means."""
    cache, gen = _means_only_cache(batch, hkv, 16, [context] * batch, context + batch + k)
    if means == "fp8":
        cache.key_means = cache.key_means.to(torch.float8_e4m3fn)
    q = torch.randn((batch, hq, DIM), generator=gen, device="cuda").to(torch.bfloat16)
    dec = FusedBlockTopkDecode(cache, hq, k, 1)
    out = torch.empty_like(q)
    dec(q, out)
    torch.cuda.synchronize()
    assert (dec.pages >= 0).all(), "page list not fully written"
    _assert_selection_ok(_selected_mask(dec.pages, cache, k), q, cache, k, 1)


# --------------------------------------------------------------- pytest-benchmark (timed)
def _graph_step(decoders, queries, outs):
    def step():
        for dec, q, o in zip(decoders, queries, outs, strict=True):
            dec(q, o)
    graph = capture_graph(step)

    def replay():
        graph.replay()
        torch.cuda.synchronize()
    return replay


@pytest.mark.parametrize("method", ["dense", "blocktopk"])
def test_benchmark_decode(benchmark, method):
    """Standard size (Qwen3-8B tp 8: 4 q / 1 kv heads, 16k context, batch 64, 64 pages of
    16), 4 cache replicas cycled in one CUDA graph (wall time per replay of 4 steps)."""
    caches, queries, outs, decoders = [], [], [], []
    for i in range(4):
        cache = PagedKVCache.random(64, 1, DIM, 16384, page_size=16, dtype=torch.bfloat16,
                                    device="cuda", seed=i)
        q = torch.randn((64, 4, DIM), device="cuda").to(torch.bfloat16)
        caches.append(cache)
        queries.append(q)
        outs.append(torch.empty_like(q))
        decoders.append(bench.make_decoder(bench.DecodeSpec(), method, cache, 4))
    replay = _graph_step(decoders, queries, outs)
    benchmark.extra_info.update(steps_per_round=4, context=16384, batch_size=64)
    benchmark.pedantic(replay, rounds=50, iterations=1, warmup_rounds=5)
