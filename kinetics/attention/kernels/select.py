"""Triton kernels of the block top-k page selection (imported lazily: needs triton).

See :mod:`kinetics.attention.select` for what they compute. Shared device helpers:
:func:`row_pages` (a row's request, KV head and page count: every kernel's prologue)
and :func:`ordered_key` (float32 scores as int32 keys that order like the floats).
"""

import triton
import triton.language as tl

from kinetics.attention.kernels.launch import pdl_enter

INT32_MIN = tl.constexpr(-2147483648)


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
                  GROUP_P2: tl.constexpr, HEAD_DIM: tl.constexpr):
    d = tl.arange(0, HEAD_DIM)
    g = tl.arange(0, GROUP_P2)
    q_rows = req * (KV_HEADS * GROUP) + head * GROUP + g
    q = tl.load(q_ptr + q_rows[:, None] * HEAD_DIM + d[None, :],
                mask=(g < GROUP)[:, None], other=0.0).to(tl.float32)
    return tl.sum(q, axis=0)  # [D]


@triton.jit
def score_kernel(q_ptr, means_ptr, lens_ptr, scores_ptr, pages_ptr, max_pages,
                 KV_HEADS: tl.constexpr, GROUP: tl.constexpr, GROUP_P2: tl.constexpr,
                 HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr,
                 LOCAL_PAGES: tl.constexpr, BLOCK_P: tl.constexpr, PDL: tl.constexpr = False):
    """Grid ``(rows, cdiv(max_pages, BLOCK_P))``: scores of ``BLOCK_P`` pages of one row:
    candidate pages get their page mean dotted with the group's summed query (float32),
    the local pages ``+inf`` (so any top-k keeps them), pages past the request's end
    ``-inf``; chunk 0 also writes the row's page count to ``pages_ptr[row]``."""
    pdl_enter(PDL)
    row = tl.program_id(0)
    req, head, n_pages = row_pages(lens_ptr, row, KV_HEADS, PAGE_SIZE)
    qsum = _summed_query(q_ptr, req, head, KV_HEADS, GROUP, GROUP_P2, HEAD_DIM)
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
                  BLOCK_N: tl.constexpr, K_P2: tl.constexpr, PDL: tl.constexpr = False):
    """Grid ``(rows,)``: the row's ``TOPK - LOCAL_PAGES`` best candidate pages (bitonic
    ``tl.topk`` over (key, page) packed in int64: best first, ties lower page first),
    then its local pages, as physical page ids (``[rows, TOPK]``)."""
    pdl_enter(PDL)
    row = tl.program_id(0)
    req, _, n_pages = row_pages(lens_ptr, row, KV_HEADS, PAGE_SIZE)
    n_cand = n_pages - LOCAL_PAGES
    p = tl.arange(0, BLOCK_N)
    valid = (p < n_cand) & (p < max_pages)
    s = tl.load(scores_ptr + row * max_pages + p, mask=valid, other=0.0,
                cache_modifier=".cg")
    best = tl.topk(pack_key_page(tl.where(valid, ordered_key(s), INT32_MIN), p), K_P2)
    write_page_list(best, table_ptr, out_ptr, row, req, n_pages, table_stride, TOPK,
                    LOCAL_PAGES, LOCAL_P2, K_P2)


@triton.jit
def pack_key_page(key, page):
    """(int32 order key, page) packed in int64 so that larger packs are better pages:
    higher key first, then (ties) the lower page number."""
    return (key.to(tl.int64) << 32) | (0x7FFFFFFF - page).to(tl.int64)


@triton.jit
def write_page_list(best, table_ptr, out_ptr, row, req, n_pages, table_stride,
                    TOPK: tl.constexpr, LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr,
                    K_P2: tl.constexpr):
    """Write row ``row``'s page list: the first ``m = min(TOPK - LOCAL_PAGES, candidates)``
    of ``best`` (``K_P2`` packs from :func:`pack_key_page`, best first), then the
    ``LOCAL_PAGES`` trailing pages, as physical ids from the request's table row."""
    m = tl.minimum(TOPK - LOCAL_PAGES, n_pages - LOCAL_PAGES)
    base = out_ptr + row * TOPK
    jj = tl.arange(0, K_P2)
    page = 0x7FFFFFFF - (best & 0xFFFFFFFF).to(tl.int32)
    take = jj < m
    phys = tl.load(table_ptr + req * table_stride + page, mask=take, other=0)
    tl.store(base + jj, phys, mask=take)
    j = tl.arange(0, LOCAL_P2)
    lp = n_pages - LOCAL_PAGES + j
    lmask = (j < LOCAL_PAGES) & (lp >= 0)
    lphys = tl.load(table_ptr + req * table_stride + lp, mask=lmask, other=0)
    tl.store(base + tl.maximum(m, 0) + j, lphys, mask=lmask)


@triton.jit
def score_topk_kernel(q_ptr, means_ptr, lens_ptr, cand_ptr, max_pages,
                      KV_HEADS: tl.constexpr, GROUP: tl.constexpr, GROUP_P2: tl.constexpr,
                      HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr,
                      LOCAL_PAGES: tl.constexpr, BLOCK_P: tl.constexpr, KEEP: tl.constexpr,
                      PDL: tl.constexpr = False):
    """Grid ``(rows, chunks)``: scores ``BLOCK_P`` candidate pages of one row (as
    :func:`score_kernel`) and keeps only its ``KEEP`` best as packs
    (:func:`pack_key_page`) in ``cand[row, chunk * KEEP:(chunk + 1) * KEEP]``: any page
    among the row's best ``KEEP`` is among its chunk's best ``KEEP``, so
    :func:`merge_candidates_kernel` finds the row's top-k in ``chunks * KEEP`` packs
    instead of ``max_pages`` scores. Local pages and pages past the end pack the lowest key."""
    pdl_enter(PDL)
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    req, head, n_pages = row_pages(lens_ptr, row, KV_HEADS, PAGE_SIZE)
    qsum = _summed_query(q_ptr, req, head, KV_HEADS, GROUP, GROUP_P2, HEAD_DIM)
    d = tl.arange(0, HEAD_DIM)
    p = chunk * BLOCK_P + tl.arange(0, BLOCK_P)
    cand = p < n_pages - LOCAL_PAGES
    means = row.to(tl.int64) * max_pages + p
    kbar = tl.load(means_ptr + means[:, None] * HEAD_DIM + d[None, :],
                   mask=cand[:, None], other=0.0).to(tl.float32)
    s = tl.sum(kbar * qsum[None, :], axis=1)
    packs = pack_key_page(tl.where(cand, ordered_key(s), INT32_MIN), p)
    if KEEP < BLOCK_P:
        packs = tl.topk(packs, KEEP)
    out = cand_ptr + (row * tl.num_programs(1) + chunk) * KEEP + tl.arange(0, KEEP)
    tl.store(out, packs)


@triton.jit
def merge_candidates_kernel(cand_ptr, table_ptr, lens_ptr, out_ptr, table_stride,
                            n_cand, KV_HEADS: tl.constexpr, PAGE_SIZE: tl.constexpr,
                            TOPK: tl.constexpr, LOCAL_PAGES: tl.constexpr,
                            LOCAL_P2: tl.constexpr, CAND_P2: tl.constexpr,
                            K_P2: tl.constexpr, PDL: tl.constexpr = False):
    """Grid ``(rows,)``: the row's top ``K_P2`` of its ``n_cand`` candidate packs
    (:func:`score_topk_kernel`; ``CAND_P2 >= max(n_cand, K_P2)``), then its page list
    (:func:`write_page_list`)."""
    pdl_enter(PDL)
    row = tl.program_id(0)
    req, _, n_pages = row_pages(lens_ptr, row, KV_HEADS, PAGE_SIZE)
    j = tl.arange(0, CAND_P2)
    packs = tl.load(cand_ptr + row * n_cand + j, mask=j < n_cand,
                    other=-9223372036854775807 - 1, cache_modifier=".cg")
    best = tl.topk(packs, K_P2)
    write_page_list(best, table_ptr, out_ptr, row, req, n_pages, table_stride, TOPK,
                    LOCAL_PAGES, LOCAL_P2, K_P2)
