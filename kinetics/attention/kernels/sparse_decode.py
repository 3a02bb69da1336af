"""Triton split-KV decode over per-row page lists (imported lazily: needs triton).

Rows are (request, KV head) pairs; row ``r`` attends the ``LIST_LEN`` physical pages
listed in ``pages[r]`` (any order: the selected pages of block top-k). The request's
last page is recognised by its id (``page_table[req, n_pages - 1]``) and only its
first ``seq_len - (n_pages - 1) * page_size`` slots count, wherever it sits in the
list.

1. ``split_decode_partial``, grid ``(rows, splits)``: program ``(row, split)`` walks
   ``TILES`` tiles of ``TILE_PAGES`` listed pages, attends the row's whole GQA query
   group at once (``GROUP`` query heads padded to ``M_ROWS >= 16`` rows: one
   ``tl.dot`` per tile for ``q k^T`` and one for ``p v``, online softmax in base 2,
   float32 accumulators) and writes its unnormalised output, running max and running
   sum (float32, ``GROUP`` rows) to scratch.
2. ``merge_splits``, grid ``(rows,)``: combines a row's ``SPLITS`` partials,
   ``SPLIT_BLOCK`` at a time.

Cache layout ``HND``: ``k_pages`` ``[num_pages, kv_heads, page_size, head_dim]``, so
slot ``s`` of physical page ``p`` for KV head ``h`` starts at element
``((p * kv_heads + h) * page_size + s) * head_dim``.
"""

import triton
import triton.language as tl

from kinetics.attention.kernels.tile import attend_tile, load_query_group, store_partial


@triton.jit
def split_decode_partial(q_ptr, k_ptr, v_ptr, list_ptr, table_ptr, lens_ptr, part_o_ptr,
                         part_ml_ptr, qk_scale, table_stride,
                         KV_HEADS: tl.constexpr, GROUP: tl.constexpr,
                         HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr,
                         LIST_LEN: tl.constexpr, TILE_PAGES: tl.constexpr,
                         TILES: tl.constexpr, M_ROWS: tl.constexpr):
    """Partial attention of one (row, split) over list positions
    ``[split * TILES * TILE_PAGES, (split + 1) * TILES * TILE_PAGES)``;
    ``qk_scale`` = log2(e) / sqrt(head_dim)."""
    row = tl.program_id(0)
    split = tl.program_id(1)
    splits = tl.num_programs(1)
    req = row // KV_HEADS
    head = row % KV_HEADS
    tokens: tl.constexpr = TILE_PAGES * PAGE_SIZE
    q = load_query_group(q_ptr, row, GROUP, HEAD_DIM, M_ROWS)  # [M, D]
    seq_len = tl.load(lens_ptr + req).to(tl.int32)
    n_pages = (seq_len + PAGE_SIZE - 1) // PAGE_SIZE
    last_page = tl.load(table_ptr + req.to(tl.int64) * table_stride + n_pages - 1)
    last_len = seq_len - (n_pages - 1) * PAGE_SIZE
    m_i = tl.full((M_ROWS,), -1.0e30, tl.float32)  # finite: an all-masked tile adds 0
    l_i = tl.zeros((M_ROWS,), tl.float32)
    acc = tl.zeros((M_ROWS, HEAD_DIM), tl.float32)
    t = tl.arange(0, tokens)
    slot = t % PAGE_SIZE
    first = split * (TILES * TILE_PAGES)
    for tile in range(TILES):
        pos = first + tile * TILE_PAGES + t // PAGE_SIZE  # list position of each token
        listed = pos < LIST_LEN
        page = tl.load(list_ptr + row * LIST_LEN + pos, mask=listed, other=0)
        ok = listed & ((page != last_page) | (slot < last_len))
        m_i, l_i, acc = attend_tile(q, k_ptr, v_ptr, page, slot, ok, head, m_i, l_i, acc,
                                    qk_scale, KV_HEADS, HEAD_DIM, PAGE_SIZE)
    store_partial(part_o_ptr, part_ml_ptr, acc, m_i, l_i, row, split, splits, GROUP,
                  HEAD_DIM, M_ROWS)


@triton.jit
def merge_splits(part_o_ptr, part_ml_ptr, out_ptr, GROUP: tl.constexpr,
                 G_P2: tl.constexpr, HEAD_DIM: tl.constexpr, SPLITS: tl.constexpr,
                 SPLIT_BLOCK: tl.constexpr):
    """Combine a row's ``SPLITS`` partials (``[rows, SPLITS, GROUP, D]`` outputs and
    ``[rows, SPLITS, GROUP, 2]`` (max, sum), base-2 logits) into ``out``, streaming
    ``SPLIT_BLOCK`` splits per step with a running max."""
    row = tl.program_id(0)
    g = tl.arange(0, G_P2)
    d = tl.arange(0, HEAD_DIM)
    gmask = g < GROUP
    m_run = tl.full((G_P2,), -1.0e30, tl.float32)
    l_run = tl.zeros((G_P2,), tl.float32)
    o_run = tl.zeros((G_P2, HEAD_DIM), tl.float32)
    for s0 in range(0, SPLITS, SPLIT_BLOCK):
        sp = s0 + tl.arange(0, SPLIT_BLOCK)
        ok = (sp < SPLITS)[:, None] & gmask[None, :]  # [S, G]
        ml = (row * SPLITS + sp)[:, None] * GROUP + g[None, :]
        m = tl.load(part_ml_ptr + ml * 2, mask=ok, other=-1.0e30, cache_modifier=".cg")
        lsum = tl.load(part_ml_ptr + ml * 2 + 1, mask=ok, other=0.0, cache_modifier=".cg")
        o = tl.load(part_o_ptr + ml[:, :, None] * HEAD_DIM + d[None, None, :],
                    mask=ok[:, :, None], other=0.0, cache_modifier=".cg")  # [S, G, D]
        m_new = tl.maximum(m_run, tl.max(m, axis=0))  # [G]
        alpha = tl.exp2(m_run - m_new)
        w = tl.exp2(m - m_new[None, :])  # [S, G]
        l_run = l_run * alpha + tl.sum(w * lsum, axis=0)
        o_run = o_run * alpha[:, None] + tl.sum(o * w[:, :, None], axis=0)
        m_run = m_new
    out = o_run / tl.where(l_run > 0, l_run, 1.0)[:, None]  # padded rows: l = 0
    tl.store(out_ptr + (row * GROUP + g)[:, None] * HEAD_DIM + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=gmask[:, None])
