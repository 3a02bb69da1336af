"""Triton split-KV dense decode over a page table (imported lazily: needs triton).

Rows are (request, KV head) pairs. Request ``req`` holds ``seq_lens[req]`` tokens in the
pages ``page_table[req, :n_pages]``; both are read on the device when the kernel runs, so
one launch shape (and one CUDA graph of it) serves any lengths up to the table's width.

``paged_dense_partial``, grid ``(rows, splits)``: the row's tiles of ``TILE_PAGES``
pages are dealt out in contiguous runs, one run per split; program ``(row, split)``
attends its run with the row's whole GQA query group at once (:func:`attend_tile`) and
writes its unnormalised output, running max and running sum (float32) to scratch. A
split with no tile (a short request) writes an empty partial. The partials are combined
by :func:`kinetics.attention.kernels.sparse_decode.merge_splits`.

Cache layout ``HND``: ``k_pages`` ``[num_pages, kv_heads, page_size, head_dim]``.
"""

import triton
import triton.language as tl

from kinetics.attention.kernels.tile import attend_tile, load_query_group, store_partial


@triton.jit
def paged_dense_partial(q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, part_o_ptr, part_ml_ptr,
                        qk_scale, table_stride, KV_HEADS: tl.constexpr,
                        GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                        PAGE_SIZE: tl.constexpr, TILE_PAGES: tl.constexpr,
                        M_ROWS: tl.constexpr):
    """Partial attention of one (row, split) over its run of the request's tiles;
    ``qk_scale`` = log2(e) / sqrt(head_dim)."""
    row = tl.program_id(0)
    split = tl.program_id(1)
    splits = tl.num_programs(1)
    req = row // KV_HEADS
    head = row % KV_HEADS
    tokens: tl.constexpr = TILE_PAGES * PAGE_SIZE
    q = load_query_group(q_ptr, row, GROUP, HEAD_DIM, M_ROWS)  # [M, D]
    seq_len = tl.load(lens_ptr + req).to(tl.int32)
    n_tiles = (seq_len + tokens - 1) // tokens
    per_split = (n_tiles + splits - 1) // splits
    lo = split * per_split
    hi = tl.minimum(lo + per_split, n_tiles)
    m_i = tl.full((M_ROWS,), -1.0e30, tl.float32)  # finite: an all-masked tile adds 0
    l_i = tl.zeros((M_ROWS,), tl.float32)
    acc = tl.zeros((M_ROWS, HEAD_DIM), tl.float32)
    t = tl.arange(0, tokens)
    table_row = table_ptr + req.to(tl.int64) * table_stride
    for tile in range(lo, hi):
        token = tile * tokens + t  # position of each token in the request
        ok = token < seq_len
        page = tl.load(table_row + token // PAGE_SIZE, mask=ok, other=0)
        m_i, l_i, acc = attend_tile(q, k_ptr, v_ptr, page, token % PAGE_SIZE, ok, head, m_i,
                                    l_i, acc, qk_scale, KV_HEADS, HEAD_DIM, PAGE_SIZE)
    store_partial(part_o_ptr, part_ml_ptr, acc, m_i, l_i, row, split, splits, GROUP,
                  HEAD_DIM, M_ROWS)
