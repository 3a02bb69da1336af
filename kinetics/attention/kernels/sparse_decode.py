"""Triton split-KV decode over a list of selected pages (imported lazily: needs triton).

The attention half of block top-k without flashinfer (see
:class:`kinetics.attention.decode.TritonSparseAttention`).
Rows are (request, KV head) pairs; each row lists ``TOPK`` flattened page ids (rows
of the one-head page view ``[pages * kv_heads, page_size, dim]``), the last one
partial with ``last_len[row]`` tokens.

1. ``sparse_decode_partial``, grid ``(rows, SPLITS)``: each program attends the
   group's query heads (padded to 16 rows for ``tl.dot``) over ``TOPK / SPLITS``
   pages, ``TILE_PAGES`` pages per step with an online softmax (base 2), and writes
   the unnormalised output, running max and sum (float32) to scratch.
2. ``sparse_decode_merge``, grid ``(rows,)``: combines the splits into the output.
"""

import triton
import triton.language as tl


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
