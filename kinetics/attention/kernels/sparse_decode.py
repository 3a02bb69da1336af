"""Triton split-KV decode over a list of selected pages (imported lazily: needs triton).

An alternative to flashinfer for the attention half of block top-k (see
:class:`kinetics.attention.decode.FlashinferBlockTopkDecode`, ``attention="triton"``).
Rows are (request, KV head) pairs; each row lists ``TOPK`` flattened page ids (rows
of the one-head page view ``[pages * kv_heads, page_size, dim]``), the last one
partial with ``last_len[row]`` tokens.

1. ``sparse_decode_partial``, grid ``(rows, SPLITS)``: each program attends the
   group's query heads (padded to 16 rows for ``tl.dot``) over ``TOPK / SPLITS``
   pages, ``TILE_PAGES`` pages per step with an online softmax (base 2), and writes
   the unnormalised output, running max and sum (float32) to scratch.
2. ``sparse_decode_merge``, grid ``(rows,)``: combines the splits into the output.

``sparse_decode_fused`` does both in one launch: the last split of a row to finish
merges the row.
"""

import triton
import triton.language as tl

from kinetics.attention.kernels.select import _radix_threshold


@triton.jit
def sparse_decode_partial(q_ptr, k_ptr, v_ptr, idx_ptr, last_len_ptr, part_o_ptr,
                          part_ml_ptr, qk_scale,
                          GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                          PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr, SPLITS: tl.constexpr,
                          TILE_PAGES: tl.constexpr, M_ROWS: tl.constexpr):
    _partial(q_ptr, k_ptr, v_ptr, idx_ptr, last_len_ptr, part_o_ptr, part_ml_ptr, qk_scale,
             tl.program_id(0), tl.program_id(1), GROUP, HEAD_DIM, PAGE_SIZE, TOPK, SPLITS,
             TILE_PAGES, M_ROWS)


@triton.jit
def sparse_decode_fused(q_ptr, k_ptr, v_ptr, idx_ptr, last_len_ptr, part_o_ptr,
                        part_ml_ptr, out_ptr, counter_ptr, qk_scale,
                        GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                        PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr, SPLITS: tl.constexpr,
                        TILE_PAGES: tl.constexpr, M_ROWS: tl.constexpr, G_P2: tl.constexpr):
    """Partial attention; the last split of a row to finish (acq_rel atomic counter per
    row) merges the row's splits and resets the counter: one launch per step."""
    row = tl.program_id(0)
    _partial(q_ptr, k_ptr, v_ptr, idx_ptr, last_len_ptr, part_o_ptr, part_ml_ptr, qk_scale,
             row, tl.program_id(1), GROUP, HEAD_DIM, PAGE_SIZE, TOPK, SPLITS, TILE_PAGES,
             M_ROWS)
    tl.debug_barrier()
    done = tl.atomic_add(counter_ptr + row, 1, sem="acq_rel")
    if done == SPLITS - 1:
        tl.store(counter_ptr + row, 0)
        _merge(part_o_ptr, part_ml_ptr, out_ptr, row, GROUP, HEAD_DIM, SPLITS, M_ROWS, G_P2)


@triton.jit
def _partial(q_ptr, k_ptr, v_ptr, idx_ptr, last_len_ptr, part_o_ptr, part_ml_ptr, qk_scale,
             row, split, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
             PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr, SPLITS: tl.constexpr,
             TILE_PAGES: tl.constexpr, M_ROWS: tl.constexpr):
    pages_per_split: tl.constexpr = TOPK // SPLITS
    tokens: tl.constexpr = TILE_PAGES * PAGE_SIZE
    g = tl.arange(0, M_ROWS)
    d = tl.arange(0, HEAD_DIM)
    gmask = g < GROUP
    q = tl.load(q_ptr + (row * GROUP + g)[:, None] * HEAD_DIM + d[None, :],
                mask=gmask[:, None], other=0.0)  # [M, D] bf16
    last_len = tl.load(last_len_ptr + row)
    m_i = tl.full((M_ROWS,), float("-inf"), tl.float32)
    l_i = tl.zeros((M_ROWS,), tl.float32)
    acc = tl.zeros((M_ROWS, HEAD_DIM), tl.float32)
    t = tl.arange(0, tokens)
    first = split * pages_per_split
    for tile in range(pages_per_split // TILE_PAGES):
        page_pos = first + tile * TILE_PAGES + t // PAGE_SIZE  # position in the row's list
        page = tl.load(idx_ptr + row * TOPK + page_pos).to(tl.int64)
        slot = t % PAGE_SIZE
        ok = (page_pos < TOPK - 1) | (slot < last_len)
        offs = (page * PAGE_SIZE + slot)[:, None] * HEAD_DIM + d[None, :]
        k = tl.load(k_ptr + offs, mask=ok[:, None], other=0.0)  # [T, D]
        v = tl.load(v_ptr + offs, mask=ok[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k)) * qk_scale  # [M, T], log2 units
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    base = row * SPLITS + split
    tl.store(part_o_ptr + (base * M_ROWS + g)[:, None] * HEAD_DIM + d[None, :], acc)
    tl.store(part_ml_ptr + (base * M_ROWS + g) * 2, m_i)
    tl.store(part_ml_ptr + (base * M_ROWS + g) * 2 + 1, l_i)


@triton.jit
def sparse_decode_merge(part_o_ptr, part_ml_ptr, out_ptr,
                        GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, SPLITS: tl.constexpr,
                        M_ROWS: tl.constexpr, G_P2: tl.constexpr):
    _merge(part_o_ptr, part_ml_ptr, out_ptr, tl.program_id(0), GROUP, HEAD_DIM, SPLITS,
           M_ROWS, G_P2)


@triton.jit
def _merge(part_o_ptr, part_ml_ptr, out_ptr, row, GROUP: tl.constexpr,
           HEAD_DIM: tl.constexpr, SPLITS: tl.constexpr, M_ROWS: tl.constexpr,
           G_P2: tl.constexpr):
    sp = tl.arange(0, SPLITS)
    g = tl.arange(0, G_P2)
    d = tl.arange(0, HEAD_DIM)
    gmask = g < GROUP
    ml = (row * SPLITS + sp)[:, None] * M_ROWS + g[None, :]  # [S, G]
    m = tl.load(part_ml_ptr + ml * 2, mask=gmask[None, :], other=float("-inf"),
                cache_modifier=".cg")
    l_ = tl.load(part_ml_ptr + ml * 2 + 1, mask=gmask[None, :], other=0.0,
                 cache_modifier=".cg")
    m_max = tl.max(m, axis=0)  # [G]
    w = tl.exp2(m - m_max[None, :])  # [S, G]
    w = tl.where(m == float("-inf"), 0.0, w)
    denom = tl.sum(w * l_, axis=0)  # [G]
    o = tl.load(part_o_ptr + ml[:, :, None] * HEAD_DIM + d[None, None, :],
                mask=gmask[None, :, None], other=0.0, cache_modifier=".cg")  # [S, G, D]
    out = tl.sum(o * w[:, :, None], axis=0) / denom[:, None]
    tl.store(out_ptr + (row * GROUP + g)[:, None] * HEAD_DIM + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=gmask[:, None])


@triton.jit
def _select_share(scores_ptr, table_ptr, lens_ptr, idx_ptr, row, split, table_stride,
                  max_pages, KV_HEADS: tl.constexpr, PAGE_SIZE: tl.constexpr,
                  TOPK: tl.constexpr, SPLITS: tl.constexpr, LOCAL_PAGES: tl.constexpr,
                  LOCAL_P2: tl.constexpr, BLOCK_N: tl.constexpr, RADIX: tl.constexpr,
                  ROUNDS: tl.constexpr):
    """This program's share of the row's top-k page list, written to ``idx_ptr``.

    The ``m = TOPK - LOCAL_PAGES`` best candidate pages of the row (exact ``m``-th
    largest score by a ``RADIX``-way search over the order-preserving int32 image of
    the float32 scores: each of ``ROUNDS`` rounds counts the keys above ``RADIX``
    thresholds at once; ties: lower page first), listed in page order by a prefix sum,
    then the local pages, the last (partial) page last. Every split program of a row
    finds the same list and writes only list positions
    ``[split * TOPK / SPLITS, (split + 1) * TOPK / SPLITS)``."""
    req = row // KV_HEADS
    head = row % KV_HEADS
    pps: tl.constexpr = TOPK // SPLITS
    first = split * pps
    n_pages = (tl.load(lens_ptr + req) + PAGE_SIZE - 1) // PAGE_SIZE
    n_cand = n_pages - LOCAL_PAGES
    m = TOPK - LOCAL_PAGES  # every request holds >= TOPK pages, so n_cand >= m
    p = tl.arange(0, BLOCK_N)
    valid = (p < n_cand) & (p < max_pages)
    s = tl.load(scores_ptr + row * max_pages + p, mask=valid, other=0.0,
                cache_modifier=".cg")
    bits = s.to(tl.int32, bitcast=True)
    key = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # int32, ordered like the floats
    # unsigned image (key + 2^31) in uint32; invalid keys at 0 never decide the answer
    ukey = tl.where(valid, (key ^ -2147483648).to(tl.uint32, bitcast=True), 0)
    # largest T with count(ukey >= T) >= m (RADIX thresholds counted per round)
    thr = _radix_threshold(ukey, m, RADIX, ROUNDS).to(tl.uint32)
    gt = valid & (ukey > thr)
    eq = valid & (ukey == thr)
    need = m - tl.sum(gt.to(tl.int32), axis=0)
    eq_rank = tl.cumsum(eq.to(tl.int32), axis=0)
    sel = gt | (eq & (eq_rank <= need))
    pos = tl.cumsum(sel.to(tl.int32), axis=0) - 1
    mine = sel & (pos >= first) & (pos < first + pps)
    base = idx_ptr + row * TOPK
    phys = tl.load(table_ptr + req * table_stride + p, mask=mine, other=0)
    tl.store(base + pos, phys * KV_HEADS + head, mask=mine)
    jl = tl.arange(0, LOCAL_P2)
    lpos = m + jl
    lmine = (jl < LOCAL_PAGES) & (lpos >= first) & (lpos < first + pps)
    lphys = tl.load(table_ptr + req * table_stride + n_cand + jl, mask=lmine, other=0)
    tl.store(base + lpos, lphys * KV_HEADS + head, mask=lmine)


@triton.jit
def sparse_decode_select(scores_ptr, table_ptr, lens_ptr, q_ptr, k_ptr, v_ptr, idx_ptr,
                         last_len_ptr, part_o_ptr, part_ml_ptr, out_ptr, counter_ptr,
                         qk_scale, table_stride, max_pages,
                         KV_HEADS: tl.constexpr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                         PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr, SPLITS: tl.constexpr,
                         TILE_PAGES: tl.constexpr, M_ROWS: tl.constexpr, G_P2: tl.constexpr,
                         LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr,
                         BLOCK_N: tl.constexpr, RADIX: tl.constexpr, ROUNDS: tl.constexpr,
                         FUSED_MERGE: tl.constexpr):
    """Top-k selection fused into the split-KV decode: each (row, split) program finds
    its row's top-k pages from the scores (:func:`_select_share`), writes its share of
    the page list, and attends it; with ``FUSED_MERGE`` the last split of a row to
    finish merges the row (else ``sparse_decode_merge`` runs after)."""
    row = tl.program_id(0)
    split = tl.program_id(1)
    _select_share(scores_ptr, table_ptr, lens_ptr, idx_ptr, row, split, table_stride,
                  max_pages, KV_HEADS, PAGE_SIZE, TOPK, SPLITS, LOCAL_PAGES, LOCAL_P2,
                  BLOCK_N, RADIX, ROUNDS)
    tl.debug_barrier()  # this program's index stores are visible to all its threads
    _partial(q_ptr, k_ptr, v_ptr, idx_ptr, last_len_ptr, part_o_ptr, part_ml_ptr, qk_scale,
             row, split, GROUP, HEAD_DIM, PAGE_SIZE, TOPK, SPLITS, TILE_PAGES, M_ROWS)
    if FUSED_MERGE:
        tl.debug_barrier()
        done = tl.atomic_add(counter_ptr + row, 1, sem="acq_rel")
        if done == SPLITS - 1:
            tl.store(counter_ptr + row, 0)
            _merge(part_o_ptr, part_ml_ptr, out_ptr, row, GROUP, HEAD_DIM, SPLITS, M_ROWS,
                   G_P2)
