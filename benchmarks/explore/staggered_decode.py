"""Block top-k decode as one persistent kernel walking a staggered list of work items
(exploration; needs triton, sm_80+).

The fused kernel (kinetics.attention.kernels.fused_decode) has every program score,
then every program attend: the two reads run one after the other, with the chain
between them (top-k, row barrier, selection, page table) leaving the memory idle. Here
``PROGRAMS`` resident programs walk one list of items, program ``p`` taking items ``p,
p + PROGRAMS, ...``:

* a **score item** ``(row, part)`` scores the row's pages ``[part * CHUNK_PAGES, ...)``
  and writes the chunk's ``K_P2`` best as candidates; the row's last score item to
  arrive selects (top-k over the row's candidates, then the local pages), writes the
  row's whole page list (physical ids) and raises the row's ``selected`` flag;
* an **attend item** ``(row, part)`` waits for that flag, attends list positions
  ``[part * TILES * TILE_PAGES, ...)`` and stores a partial; the row's last to arrive
  merges the partials in part order and resets the row's counters.

Rows come in groups of ``GROUP_ROWS``; the list is S0, S1, A0, S2, A1, ..., A(G-1)
(S: a group's score items, A: its attend items), so one group's chain runs while the
next group is being scored. All programs must be resident at once (they spin).
Counters ``[rows, 3]`` int32 (scored, selected, attended), zero at first and after
every launch.
"""

import triton
import triton.language as tl

from kinetics.attention.kernels.fused_decode import _chunk_best, _finish, _write_share
from kinetics.attention.kernels.select import row_pages
from kinetics.attention.kernels.tile import attend_tile, load_query_group


@triton.jit
def _item(i, GROUP_ROWS: tl.constexpr, NS: tl.constexpr, NA: tl.constexpr,
          GROUPS: tl.constexpr):
    """(is a score item, row, part) of item ``i`` of the list S0, S1, A0, ..., A(G-1)."""
    sblock: tl.constexpr = GROUP_ROWS * NS
    period: tl.constexpr = GROUP_ROWS * (NS + NA)
    j = tl.maximum(i - sblock, 0)
    k = j // period
    r = j - k * period
    first = i < sblock
    last = k >= GROUPS - 1
    score = first | ((~last) & (r < sblock))
    group = tl.where(first, 0, tl.where(last, GROUPS - 1, tl.where(r < sblock, k + 1, k)))
    idx = tl.where(first, i, tl.where(last | (r < sblock), r, r - sblock))
    per_row = tl.where(score, NS, NA)
    return score, group * GROUP_ROWS + idx // per_row, idx % per_row


@triton.jit
def _spin_until(ptr, target):
    """Wait until ``*ptr >= target`` (acquire), backing off between polls."""
    seen = tl.atomic_add(ptr, 0, sem="acquire")
    while seen < target:
        tl.inline_asm_elementwise("nanosleep.u32 100; mov.u32 $0, 0;", "=r", [],
                                  dtype=tl.int32, is_pure=False, pack=1)
        seen = tl.atomic_add(ptr, 0, sem="acquire")
    tl.debug_barrier()


@triton.jit
def _score_item(q, means_ptr, scores_ptr, cands_ptr, table_ptr, pages_ptr, count_ptr, row,
                req, n_pages, part, max_pages, table_stride, HEAD_DIM: tl.constexpr,
                TOPK: tl.constexpr, TOPK_P2: tl.constexpr, LOCAL_PAGES: tl.constexpr,
                LOCAL_P2: tl.constexpr, NS: tl.constexpr, CHUNK_PAGES: tl.constexpr,
                BLOCK_P: tl.constexpr, K_P2: tl.constexpr, CANDS_P2: tl.constexpr,
                MAXP: tl.constexpr):
    n_cand = n_pages - LOCAL_PAGES
    top = _chunk_best(q, means_ptr, scores_ptr, row, part * CHUNK_PAGES, n_cand, max_pages,
                      HEAD_DIM, CHUNK_PAGES, BLOCK_P, K_P2, MAXP)
    if NS == 1:
        _write_share(top, table_ptr, pages_ptr, req, row, n_pages, table_stride, 0, TOPK,
                     TOPK, TOPK_P2, LOCAL_PAGES, LOCAL_P2, K_P2, MAXP)
        tl.debug_barrier()
        tl.atomic_add(count_ptr + 1, 1, sem="release")
    else:
        n_cands: tl.constexpr = NS * K_P2
        cands = cands_ptr + row.to(tl.int64) * n_cands
        tl.store(cands + part * K_P2 + tl.arange(0, K_P2), top)
        tl.debug_barrier()
        arrived = tl.atomic_add(count_ptr, 1, sem="acq_rel")
        if arrived == NS - 1:  # the row's last: select for all its attend items
            c = tl.arange(0, CANDS_P2)
            low = tl.full((CANDS_P2,), -2147483648, tl.int32).to(tl.int64) << 32
            packed = tl.load(cands + c, mask=c < n_cands, other=0, cache_modifier=".cg")
            best = tl.topk(tl.where(c < n_cands, packed, low), K_P2)
            _write_share(best, table_ptr, pages_ptr, req, row, n_pages, table_stride, 0,
                         TOPK, TOPK, TOPK_P2, LOCAL_PAGES, LOCAL_P2, K_P2, MAXP)
            tl.store(count_ptr, 0)
            tl.debug_barrier()
            tl.atomic_add(count_ptr + 1, 1, sem="release")


@triton.jit
def _attend_item(q, k_ptr, v_ptr, table_ptr, lens_ptr, pages_ptr, part_o_ptr, part_ml_ptr,
                 out_ptr, count_ptr, row, req, head, n_pages, part, table_stride, qk_scale,
                 KV_HEADS: tl.constexpr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                 PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr, LOCAL_PAGES: tl.constexpr,
                 NA: tl.constexpr, TILE_PAGES: tl.constexpr, TILES: tl.constexpr,
                 M_ROWS: tl.constexpr):
    seq_len = tl.load(lens_ptr + req).to(tl.int32)
    last_page = tl.load(table_ptr + req.to(tl.int64) * table_stride + n_pages - 1)
    list_len = (tl.minimum(TOPK - LOCAL_PAGES, tl.maximum(n_pages - LOCAL_PAGES, 0))
                + tl.minimum(n_pages, LOCAL_PAGES))
    _spin_until(count_ptr + 1, 1)
    tokens: tl.constexpr = TILE_PAGES * PAGE_SIZE
    t = tl.arange(0, tokens)
    slot = t % PAGE_SIZE
    last_len = seq_len - (n_pages - 1) * PAGE_SIZE
    m_i = tl.full((M_ROWS,), -1.0e30, tl.float32)
    l_i = tl.zeros((M_ROWS,), tl.float32)
    acc = tl.zeros((M_ROWS, HEAD_DIM), tl.float32)
    lo = part * (TILES * TILE_PAGES)
    for tile in range(TILES):
        pos = lo + tile * TILE_PAGES + t // PAGE_SIZE
        listed = pos < list_len
        page = tl.load(pages_ptr + row * TOPK + pos, mask=listed, other=0,
                       cache_modifier=".cg")
        ok = listed & ((page != last_page) | (slot < last_len))
        m_i, l_i, acc = attend_tile(q, k_ptr, v_ptr, page, slot, ok, head, m_i, l_i, acc,
                                    qk_scale, KV_HEADS, HEAD_DIM, PAGE_SIZE)
    _finish(acc, m_i, l_i, out_ptr, part_o_ptr, part_ml_ptr, count_ptr + 1, row, part,
            GROUP, HEAD_DIM, NA, M_ROWS)
    if NA == 1:  # no merge to reset the flag
        tl.store(count_ptr + 1, 0)


@triton.jit
def staggered_blocktopk_kernel(
        q_ptr, means_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, scores_ptr, cands_ptr,
        pages_ptr, part_o_ptr, part_ml_ptr, count_ptr, out_ptr, qk_scale, max_pages,
        table_stride, ROWS, KV_HEADS: tl.constexpr, GROUP: tl.constexpr,
        HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr,
        TOPK_P2: tl.constexpr, LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr,
        NS: tl.constexpr, NA: tl.constexpr, GROUP_ROWS: tl.constexpr, GROUPS: tl.constexpr,
        PROGRAMS: tl.constexpr, CHUNK_PAGES: tl.constexpr, BLOCK_P: tl.constexpr,
        K_P2: tl.constexpr, CANDS_P2: tl.constexpr, MAXP: tl.constexpr,
        TILE_PAGES: tl.constexpr, TILES: tl.constexpr, M_ROWS: tl.constexpr):
    """Program ``program_id(0)`` of ``PROGRAMS`` walks its items of the list (module
    docstring); ``qk_scale`` = log2(e) / sqrt(head_dim)."""
    n_items: tl.constexpr = GROUPS * GROUP_ROWS * (NS + NA)
    for i in range(tl.program_id(0), n_items, PROGRAMS):
        score, row, part = _item(i, GROUP_ROWS, NS, NA, GROUPS)
        if row < ROWS:
            req, head, n_pages = row_pages(lens_ptr, row, KV_HEADS, PAGE_SIZE)
            q = load_query_group(q_ptr, row, GROUP, HEAD_DIM, M_ROWS)
            if score:
                _score_item(q, means_ptr, scores_ptr, cands_ptr, table_ptr, pages_ptr,
                            count_ptr + row * 3, row, req, n_pages, part, max_pages,
                            table_stride, HEAD_DIM, TOPK, TOPK_P2, LOCAL_PAGES, LOCAL_P2, NS,
                            CHUNK_PAGES, BLOCK_P, K_P2, CANDS_P2, MAXP)
            else:
                _attend_item(q, k_ptr, v_ptr, table_ptr, lens_ptr, pages_ptr, part_o_ptr,
                             part_ml_ptr, out_ptr, count_ptr + row * 3, row, req, head,
                             n_pages, part, table_stride, qk_scale, KV_HEADS, GROUP,
                             HEAD_DIM, PAGE_SIZE, TOPK, LOCAL_PAGES, NA, TILE_PAGES, TILES,
                             M_ROWS)
