"""Triton kernels of the block top-k page selection (imported lazily: needs triton).

See :mod:`kinetics.attention.select` for what they compute. Shared device helpers:
:func:`row_pages` (a row's request, KV head and page count: every kernel's prologue)
and :func:`ordered_key` (float32 scores as int32 keys that order like the floats).
"""

import triton
import triton.language as tl


@triton.jit
def row_pages(lens_ptr, row, KV_HEADS: tl.constexpr, PAGE_SIZE: tl.constexpr):
    """(request, KV head, pages the request holds) of row ``row = request * KV_HEADS + head``."""
    req = row // KV_HEADS
    head = row % KV_HEADS
    n_pages = (tl.load(lens_ptr + req) + PAGE_SIZE - 1) // PAGE_SIZE
    return req, head, n_pages


@triton.jit
def ordered_key(scores):
    """int32 image of float32 ``scores`` that orders like the floats (sign-magnitude to
    two's complement: negative floats get their magnitude bits flipped)."""
    bits = scores.to(tl.int32, bitcast=True)
    return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


@triton.jit
def _summed_query(q_ptr, req, head, KV_HEADS: tl.constexpr, GROUP: tl.constexpr,
                  HEAD_DIM: tl.constexpr):
    """Sum (float32) of the group's query heads, added one [D] row at a time: a 1-D
    layout whatever the group, so the page-mean load keeps its own. (Summing a [group,
    D] tile let its layout reach the page-mean load and slowed the scoring of GQA group
    8: benchmarks/explore/explore_qsum.py, benchmarks/RESULTS.md.)"""
    d = tl.arange(0, HEAD_DIM)
    first = (req * KV_HEADS + head) * GROUP
    qsum = tl.zeros((HEAD_DIM,), dtype=tl.float32)
    for g in tl.static_range(GROUP):
        qsum += tl.load(q_ptr + (first + g) * HEAD_DIM + d).to(tl.float32)
    return qsum


@triton.jit
def score_kernel(q_ptr, means_ptr, lens_ptr, scores_ptr, pages_ptr, max_pages,
                 KV_HEADS: tl.constexpr, GROUP: tl.constexpr,
                 HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr,
                 LOCAL_PAGES: tl.constexpr, BLOCK_P: tl.constexpr):
    """Grid ``(rows, cdiv(max_pages, BLOCK_P))``: scores of ``BLOCK_P`` pages of one row:
    candidate pages get their page mean dotted with the group's summed query (float32),
    the local pages ``+inf`` (so any top-k keeps them), pages past the request's end
    ``-inf``; chunk 0 also writes the row's page count to ``pages_ptr[row]``."""
    row = tl.program_id(0)
    req, head, n_pages = row_pages(lens_ptr, row, KV_HEADS, PAGE_SIZE)
    qsum = _summed_query(q_ptr, req, head, KV_HEADS, GROUP, HEAD_DIM)
    d = tl.arange(0, HEAD_DIM)
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    cand = p < n_pages - LOCAL_PAGES
    means = row.to(tl.int64) * max_pages + p  # key_means is [rows, max_pages, D]
    kbar = tl.load(means_ptr + means[:, None] * HEAD_DIM + d[None, :],
                   mask=cand[:, None], other=0.0).to(tl.float32)
    s = tl.sum(kbar * qsum[None, :], axis=1)
    s = tl.where(cand, s, tl.where(p < n_pages, float("inf"), float("-inf")))
    tl.store(scores_ptr + row * max_pages + p, s, mask=p < max_pages)
    if tl.program_id(1) == 0:
        tl.store(pages_ptr + row, n_pages.to(tl.int32))


@triton.jit
def select_kernel(scores_ptr, table_ptr, lens_ptr, out_ptr, table_stride, max_pages,
                  KV_HEADS: tl.constexpr, PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr,
                  LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr,
                  BLOCK_N: tl.constexpr, K_P2: tl.constexpr):
    """Grid ``(rows,)``: the row's ``TOPK - LOCAL_PAGES`` best candidate pages (bitonic
    ``tl.topk`` over (key, page) packed in int64: best first, ties lower page first),
    then its local pages, as physical page ids (``[rows, TOPK]``)."""
    row = tl.program_id(0)
    req, _, n_pages = row_pages(lens_ptr, row, KV_HEADS, PAGE_SIZE)
    n_cand = n_pages - LOCAL_PAGES
    m = tl.minimum(TOPK - LOCAL_PAGES, n_cand)
    p = tl.arange(0, BLOCK_N)
    valid = (p < n_cand) & (p < max_pages)
    s = tl.load(scores_ptr + row * max_pages + p, mask=valid, other=0.0,
                cache_modifier=".cg")
    key = tl.where(valid, ordered_key(s), -2147483648)
    base = out_ptr + row * TOPK
    packed = (key.to(tl.int64) << 32) | (BLOCK_N - 1 - p).to(tl.int64)
    best = tl.topk(packed, K_P2)
    jj = tl.arange(0, K_P2)
    page = BLOCK_N - 1 - (best & 0xFFFFFFFF).to(tl.int32)
    take = jj < m
    phys = tl.load(table_ptr + req * table_stride + page, mask=take, other=0)
    tl.store(base + jj, phys, mask=take)
    j = tl.arange(0, LOCAL_P2)
    lp = n_pages - LOCAL_PAGES + j
    lmask = (j < LOCAL_PAGES) & (lp >= 0)
    lphys = tl.load(table_ptr + req * table_stride + lp, mask=lmask, other=0)
    tl.store(base + tl.maximum(m, 0) + j, lphys, mask=lmask)
