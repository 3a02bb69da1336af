"""Triton block top-k decode in one kernel: score, select and attend (imported lazily:
needs triton).

Grid ``(rows, SPLITS)``, rows = (request, KV head) pairs. Program ``(row, split)``:

1. **scores** the row's candidate pages ``[split * CHUNKS * CHUNK_PAGES, ...)``, one
   chunk of ``CHUNK_PAGES`` at a time: the page means (stored by request and logical
   page) against the group's query heads, one ``tl.dot`` per ``BLOCK_P`` pages, summed
   over the group (the block score ``sum_g q_g . kbar_p``), float32 scores to the
   row's scratch; then the chunk's ``K_P2`` best pages by ``tl.topk`` over (score
   key, page) packed in int64 (ties: lower page first), written as candidates;
2. with several splits, waits for the row's other splits (``PHASE == 0``: an acq_rel
   arrival counter and a spin; the grid must fit on the GPU at once), or the host
   launches the second half separately (``PHASE == 1`` then ``PHASE == 2``);
3. **selects**: ``tl.topk`` over the row's candidates, the ``min(TOPK - LOCAL_PAGES,
   candidates)`` best, then the local pages; every split computes the same list and
   writes its share of it (``PER`` list positions) as physical page ids to
   ``pages[row]`` (unused positions: -1);
4. **attends** its share: ``TILES`` tiles of ``TILE_PAGES`` pages, the whole query
   group in one ``tl.dot`` tile (``M_ROWS >= 16`` rows), online softmax in base 2,
   float32;
5. **merges**: one split stores the output; several store float32 partials and the
   last to arrive (a second acq_rel counter) combines them in split order
   (deterministic), writes the output and resets both counters for the next launch.

With one split and one chunk the chunk's top-k is the selection (no candidate
round trip). Scratch: ``scores`` ``[rows, max_pages]`` float32, ``cands`` ``[rows,
SPLITS * CHUNKS, K_P2]`` int64, ``part_o`` ``[rows, SPLITS, GROUP, D]``, ``part_ml``
``[rows, SPLITS, GROUP, 2]``, ``counters`` ``[rows, 2]`` int32 (zero at first).
Cache layout as :mod:`.sparse_decode`.

With ``STAMPS``, every program records its SM clock (``%clock64``, cycles) and the
global timer (``%globaltimer``, ns) at the ``STAMP_POINTS`` phase boundaries (start,
scored, row arrived, selected, attended, finished) into ``stamps`` ``[rows, SPLITS,
STAMP_POINTS, 2]`` int64; the boundaries are approximate (the compiler may overlap a
phase's last loads with the next). Off (the default), no code is emitted for them.
"""

import triton
import triton.language as tl

from kinetics.attention.kernels.select import ordered_key, row_pages
from kinetics.attention.kernels.tile import attend_tile, load_query_group, store_partial

STAMP_POINTS = tl.constexpr(6)  # start, scored, row arrived, selected, attended, finished


@triton.jit
def _stamp(stamps_ptr, row, split, SPLITS: tl.constexpr, point: tl.constexpr,
           STAMPS: tl.constexpr):
    """Record program (row, split)'s SM clock and global timer at phase boundary
    ``point`` (nothing unless ``STAMPS``)."""
    if STAMPS:
        tl.debug_barrier()
        cycles = tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64,
                                           is_pure=False, pack=1)
        ns = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64,
                                       is_pure=False, pack=1)
        at = stamps_ptr + ((row.to(tl.int64) * SPLITS + split) * STAMP_POINTS + point) * 2
        tl.store(at, cycles)
        tl.store(at + 1, ns)


@triton.jit
def _chunk_best(q, means_ptr, scores_ptr, row, first, n_cand, max_pages,
                HEAD_DIM: tl.constexpr, CHUNK_PAGES: tl.constexpr, BLOCK_P: tl.constexpr,
                K_P2: tl.constexpr, MAXP: tl.constexpr):
    """The ``K_P2`` best (key, page) packs of pages ``[first, first + CHUNK_PAGES)`` of
    ``row`` (best first; pages at or past ``n_cand`` rank below every scored page). The
    page means are read up to ``max_pages`` whatever the row's length, so the first reads
    need not wait for the length's load; pages past ``n_cand`` are masked afterwards."""
    d = tl.arange(0, HEAD_DIM)
    base = row.to(tl.int64) * max_pages
    for b in range(CHUNK_PAGES // BLOCK_P):
        p = first + b * BLOCK_P + tl.arange(0, BLOCK_P)
        cand = p < n_cand
        kbar = tl.load(means_ptr + (base + p)[:, None] * HEAD_DIM + d[None, :],
                       mask=(p < max_pages)[:, None], other=0.0)  # not waiting for the length
        s = tl.sum(tl.dot(q, tl.trans(kbar.to(q.dtype))), axis=0)  # [BLOCK_P], float32
        tl.store(scores_ptr + base + p, s, mask=cand)
    tl.debug_barrier()
    p = first + tl.arange(0, CHUNK_PAGES)
    valid = p < n_cand
    s = tl.load(scores_ptr + base + p, mask=valid, other=0.0)
    key = tl.where(valid, ordered_key(s), -2147483648)
    packed = (key.to(tl.int64) << 32) | (MAXP - 1 - p).to(tl.int64)
    return tl.topk(packed, K_P2)


@triton.jit
def _row_barrier(count_ptr, SPLITS: tl.constexpr):
    """Wait until all ``SPLITS`` programs of the row have arrived (their earlier global
    writes visible after it)."""
    tl.debug_barrier()
    tl.atomic_add(count_ptr, 1, sem="acq_rel")
    arrived = tl.atomic_add(count_ptr, 0, sem="acquire")
    while arrived < SPLITS:
        arrived = tl.atomic_add(count_ptr, 0, sem="acquire")
    tl.debug_barrier()


@triton.jit
def _write_share(best, table_ptr, pages_ptr, req, row, n_pages, table_stride, lo, hi,
                 TOPK: tl.constexpr, TOPK_P2: tl.constexpr, LOCAL_PAGES: tl.constexpr,
                 LOCAL_P2: tl.constexpr, K_P2: tl.constexpr, MAXP: tl.constexpr):
    """Write list positions ``[lo, hi)`` of the row's page list (the ``m`` best pages,
    then the local ones; -1 past its end) as physical ids; returns its length."""
    n_local = tl.minimum(n_pages, LOCAL_PAGES)
    m = tl.minimum(TOPK - LOCAL_PAGES, tl.maximum(n_pages - LOCAL_PAGES, 0))
    table = table_ptr + req.to(tl.int64) * table_stride
    out = pages_ptr + row * TOPK
    jj = tl.arange(0, K_P2)
    page = MAXP - 1 - (best & 0xFFFFFFFF).to(tl.int32)
    take = (jj < m) & (jj >= lo) & (jj < hi)
    tl.store(out + jj, tl.load(table + page, mask=take, other=0), mask=take)
    i = tl.arange(0, LOCAL_P2)
    pos = m + i
    lt = (i < n_local) & (pos >= lo) & (pos < hi)
    tl.store(out + pos, tl.load(table + n_pages - n_local + i, mask=lt, other=0), mask=lt)
    j = tl.arange(0, TOPK_P2)
    tl.store(out + j, tl.full((TOPK_P2,), -1, tl.int32),
             mask=(j >= m + n_local) & (j < TOPK) & (j >= lo) & (j < hi))
    return m + n_local


@triton.jit
def _attend_share(q, k_ptr, v_ptr, pages_ptr, row, head, lo, list_len, last_page, last_len,
                  qk_scale, KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
                  PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr, TILE_PAGES: tl.constexpr,
                  TILES: tl.constexpr, M_ROWS: tl.constexpr):
    """Online-softmax attention (base 2) of ``q`` over list positions ``[lo, lo + TILES *
    TILE_PAGES)`` (those below ``list_len``): (acc, running max, running sum)."""
    tokens: tl.constexpr = TILE_PAGES * PAGE_SIZE
    t = tl.arange(0, tokens)
    slot = t % PAGE_SIZE
    m_i = tl.full((M_ROWS,), -1.0e30, tl.float32)  # finite: an all-masked tile adds 0
    l_i = tl.zeros((M_ROWS,), tl.float32)
    acc = tl.zeros((M_ROWS, HEAD_DIM), tl.float32)
    for tile in range(TILES):
        pos = lo + tile * TILE_PAGES + t // PAGE_SIZE
        listed = pos < list_len
        page = tl.load(pages_ptr + row * TOPK + pos, mask=listed, other=0)
        ok = listed & ((page != last_page) | (slot < last_len))
        m_i, l_i, acc = attend_tile(q, k_ptr, v_ptr, page, slot, ok, head, m_i, l_i, acc,
                                    qk_scale, KV_HEADS, HEAD_DIM, PAGE_SIZE)
    return acc, m_i, l_i


@triton.jit
def _finish(acc, m_i, l_i, out_ptr, part_o_ptr, part_ml_ptr, count_ptr, row, split,
            GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, SPLITS: tl.constexpr,
            M_ROWS: tl.constexpr):
    """Store the output (one split) or this split's partial; the row's last split to
    arrive combines the partials in split order and resets the row's counters."""
    g = tl.arange(0, M_ROWS)
    d = tl.arange(0, HEAD_DIM)
    gmask = g < GROUP
    dst = out_ptr + (row * GROUP + g)[:, None] * HEAD_DIM + d[None, :]
    if SPLITS == 1:
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        tl.store(dst, out.to(out_ptr.dtype.element_ty), mask=gmask[:, None])
    else:
        store_partial(part_o_ptr, part_ml_ptr, acc, m_i, l_i, row, split, SPLITS, GROUP,
                      HEAD_DIM, M_ROWS)
        tl.debug_barrier()
        done = tl.atomic_add(count_ptr + 1, 1, sem="acq_rel")
        if done == SPLITS - 1:
            m_run = tl.full((M_ROWS,), -1.0e30, tl.float32)
            l_run = tl.zeros((M_ROWS,), tl.float32)
            o_run = tl.zeros((M_ROWS, HEAD_DIM), tl.float32)
            for sp in range(SPLITS):
                b = (row * SPLITS + sp) * GROUP + g
                m = tl.load(part_ml_ptr + b * 2, mask=gmask, other=-1.0e30,
                            cache_modifier=".cg")
                lsum = tl.load(part_ml_ptr + b * 2 + 1, mask=gmask, other=0.0,
                               cache_modifier=".cg")
                o = tl.load(part_o_ptr + b[:, None] * HEAD_DIM + d[None, :],
                            mask=gmask[:, None], other=0.0, cache_modifier=".cg")
                m_new = tl.maximum(m_run, m)
                alpha = tl.exp2(m_run - m_new)
                w = tl.exp2(m - m_new)
                l_run = l_run * alpha + w * lsum
                o_run = o_run * alpha[:, None] + o * w[:, None]
                m_run = m_new
            out = o_run / tl.where(l_run > 0, l_run, 1.0)[:, None]
            tl.store(dst, out.to(out_ptr.dtype.element_ty), mask=gmask[:, None])
            tl.store(count_ptr, 0)
            tl.store(count_ptr + 1, 0)


@triton.jit
def fused_blocktopk_kernel(
        q_ptr, means_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, scores_ptr, cands_ptr,
        pages_ptr, part_o_ptr, part_ml_ptr, count_ptr, out_ptr, stamps_ptr, qk_scale, max_pages,
        table_stride, KV_HEADS: tl.constexpr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
        PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr, TOPK_P2: tl.constexpr,
        LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr, SPLITS: tl.constexpr,
        CHUNKS: tl.constexpr, CHUNK_PAGES: tl.constexpr, BLOCK_P: tl.constexpr,
        K_P2: tl.constexpr, CANDS_P2: tl.constexpr, MAXP: tl.constexpr,
        TILE_PAGES: tl.constexpr, TILES: tl.constexpr, M_ROWS: tl.constexpr,
        PHASE: tl.constexpr, STAMPS: tl.constexpr = False):
    """Block top-k decode of row ``program_id(0)``, split ``program_id(1)`` (module
    docstring); ``PHASE`` 0: the whole step, 1: scoring and candidates only, 2: the rest;
    ``qk_scale`` = log2(e) / sqrt(head_dim); ``STAMPS``: record the phase boundaries."""
    row = tl.program_id(0)
    split = tl.program_id(1)
    if PHASE != 2:
        _stamp(stamps_ptr, row, split, SPLITS, 0, STAMPS)
    req, head, n_pages = row_pages(lens_ptr, row, KV_HEADS, PAGE_SIZE)
    n_cand = n_pages - LOCAL_PAGES
    q = load_query_group(q_ptr, row, GROUP, HEAD_DIM, M_ROWS)  # [M, D]
    n_cands: tl.constexpr = SPLITS * CHUNKS * K_P2
    cands = cands_ptr + row.to(tl.int64) * n_cands
    if PHASE != 2:
        if SPLITS * CHUNKS == 1:
            best = _chunk_best(q, means_ptr, scores_ptr, row, 0, n_cand, max_pages,
                               HEAD_DIM, CHUNK_PAGES, BLOCK_P, K_P2, MAXP)
        else:
            kk = tl.arange(0, K_P2)
            for c in range(CHUNKS):
                chunk = split * CHUNKS + c
                top = _chunk_best(q, means_ptr, scores_ptr, row, chunk * CHUNK_PAGES,
                                  n_cand, max_pages, HEAD_DIM, CHUNK_PAGES, BLOCK_P, K_P2,
                                  MAXP)
                tl.store(cands + chunk * K_P2 + kk, top)
        _stamp(stamps_ptr, row, split, SPLITS, 1, STAMPS)
    if PHASE != 1:
        if SPLITS * CHUNKS > 1 and PHASE == 0:
            if SPLITS > 1:
                _row_barrier(count_ptr + row * 2, SPLITS)
            else:
                tl.debug_barrier()
        _stamp(stamps_ptr, row, split, SPLITS, 2, STAMPS)
        if SPLITS * CHUNKS > 1:
            c = tl.arange(0, CANDS_P2)
            low = tl.full((CANDS_P2,), -2147483648, tl.int32).to(tl.int64) << 32
            packed = tl.load(cands + c, mask=c < n_cands, other=0, cache_modifier=".cg")
            best = tl.topk(tl.where(c < n_cands, packed, low), K_P2)
        per: tl.constexpr = TILES * TILE_PAGES
        lo = split * per
        list_len = _write_share(best, table_ptr, pages_ptr, req, row, n_pages, table_stride,
                                lo, lo + per, TOPK, TOPK_P2, LOCAL_PAGES, LOCAL_P2, K_P2,
                                MAXP)
        tl.debug_barrier()
        _stamp(stamps_ptr, row, split, SPLITS, 3, STAMPS)
        seq_len = tl.load(lens_ptr + req).to(tl.int32)
        last_page = tl.load(table_ptr + req.to(tl.int64) * table_stride + n_pages - 1)
        acc, m_i, l_i = _attend_share(q, k_ptr, v_ptr, pages_ptr, row, head, lo, list_len,
                                      last_page, seq_len - (n_pages - 1) * PAGE_SIZE,
                                      qk_scale, KV_HEADS, HEAD_DIM, PAGE_SIZE, TOPK,
                                      TILE_PAGES, TILES, M_ROWS)
        _stamp(stamps_ptr, row, split, SPLITS, 4, STAMPS)
        _finish(acc, m_i, l_i, out_ptr, part_o_ptr, part_ml_ptr, count_ptr + row * 2, row,
                split, GROUP, HEAD_DIM, SPLITS, M_ROWS)
        _stamp(stamps_ptr, row, split, SPLITS, 5, STAMPS)
