"""Block top-k page selection (scoring + top-k) as Triton kernels.

Two launches, both CUDA-graph friendly (fixed grids, no host sync):

1. ``_score_kernel``, grid ``(batch * kv_heads, cdiv(max_pages, BLOCK_P))``: each
   program reads the page means (compressed keys) of ``BLOCK_P`` pages of one
   (request, KV head) through the page table, dots them with the sum of the group's
   query heads in float32 and writes the scores (``float32 [batch * kv_heads,
   max_pages]``, a few KB per request, L2-resident). Spreading the pages over
   programs keeps every SM streaming the compressed keys, the only large read.
2. ``_select_kernel``, grid ``(batch * kv_heads,)``: one program per (request, KV
   head) finds the ``m``-th largest candidate score by a 32-step binary search on
   the order-preserving integer image of the float32 scores (one block-wide count per
   step), keeps the scores above it plus the first ties in page order, compacts them
   with a prefix sum, and writes the flattened page ids (``page * kv_heads + head``,
   rows of the ``HND`` cache viewed as one-head pages) straight into the decode
   kernel's page-index buffer: first the chosen pages in page order, then the
   ``local_pages`` local pages with the last, partial page last (the decode kernel
   takes the last listed page as the partial one).

Semantics equal :func:`kinetics.attention.reference.select_pages` up to ties and
float32 summation order. Every request must hold at least ``topk_pages`` pages, so
each (request, KV head) lists exactly ``topk_pages`` pages.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@functools.lru_cache(maxsize=1)
def _kernels() -> tuple[Any, Any]:
    import triton
    import triton.language as tl

    @triton.jit
    def _score_kernel(q_ptr, means_ptr, table_ptr, lens_ptr, scores_ptr,
                      table_stride, max_pages,
                      KV_HEADS: tl.constexpr, GROUP: tl.constexpr, GROUP_P2: tl.constexpr,
                      HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr,
                      LOCAL_PAGES: tl.constexpr, BLOCK_P: tl.constexpr):
        pid = tl.program_id(0)
        chunk = tl.program_id(1)
        req = pid // KV_HEADS
        head = pid % KV_HEADS
        d = tl.arange(0, HEAD_DIM)
        g = tl.arange(0, GROUP_P2)
        q_rows = req * (KV_HEADS * GROUP) + head * GROUP + g
        q = tl.load(q_ptr + q_rows[:, None] * HEAD_DIM + d[None, :],
                    mask=(g < GROUP)[:, None], other=0.0).to(tl.float32)
        qsum = tl.sum(q, axis=0)  # [D]
        n_tok = tl.load(lens_ptr + req)
        n_pages = (n_tok + PAGE_SIZE - 1) // PAGE_SIZE
        n_cand = n_pages - LOCAL_PAGES
        p = chunk * BLOCK_P + tl.arange(0, BLOCK_P)
        cand = p < n_cand
        phys = tl.load(table_ptr + req * table_stride + p, mask=cand, other=0).to(tl.int64)
        rows = phys * KV_HEADS + head
        kbar = tl.load(means_ptr + rows[:, None] * HEAD_DIM + d[None, :],
                       mask=cand[:, None], other=0.0).to(tl.float32)
        s = tl.sum(kbar * qsum[None, :], axis=1)
        tl.store(scores_ptr + pid * max_pages + p, s, mask=p < max_pages)

    @triton.jit
    def _select_kernel(scores_ptr, table_ptr, lens_ptr, out_ptr,
                       table_stride, max_pages, out_offset,
                       KV_HEADS: tl.constexpr, PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr,
                       LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr,
                       BLOCK_N: tl.constexpr):
        pid = tl.program_id(0)
        req = pid // KV_HEADS
        head = pid % KV_HEADS
        n_tok = tl.load(lens_ptr + req)
        n_pages = (n_tok + PAGE_SIZE - 1) // PAGE_SIZE
        n_cand = n_pages - LOCAL_PAGES
        m = tl.minimum(TOPK - LOCAL_PAGES, n_cand)
        p = tl.arange(0, BLOCK_N)
        valid = (p < n_cand) & (p < max_pages)
        s = tl.load(scores_ptr + pid * max_pages + p, mask=valid, other=0.0)
        bits = s.to(tl.int32, bitcast=True)
        key = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(tl.int64)
        # largest T with count(key >= T) >= m, searched over the int32 range
        lo = tl.full((), -2147483648, tl.int64)
        hi = tl.full((), 2147483647, tl.int64)
        for _ in range(32):
            mid = (lo + hi + 1) >> 1
            cnt = tl.sum((valid & (key >= mid)).to(tl.int32), axis=0)
            ok = cnt >= m
            lo = tl.where(ok, mid, lo)
            hi = tl.where(ok, hi, mid - 1)
        gt = valid & (key > lo)
        eq = valid & (key == lo)
        need = m - tl.sum(gt.to(tl.int32), axis=0)
        eq_rank = tl.cumsum(eq.to(tl.int32), axis=0)
        sel = gt | (eq & (eq_rank <= need))
        pos = tl.cumsum(sel.to(tl.int32), axis=0) - 1
        phys = tl.load(table_ptr + req * table_stride + p, mask=sel, other=0)
        base = out_ptr + out_offset + pid * TOPK
        tl.store(base + pos, phys * KV_HEADS + head, mask=sel)
        j = tl.arange(0, LOCAL_P2)
        lp = n_pages - LOCAL_PAGES + j
        lmask = (j < LOCAL_PAGES) & (lp >= 0)
        lphys = tl.load(table_ptr + req * table_stride + lp, mask=lmask, other=0)
        tl.store(base + m + j, lphys * KV_HEADS + head, mask=lmask)

    return _score_kernel, _select_kernel


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


class PageSelector:
    """Launches the two selection kernels for fixed shapes into fixed buffers.

    Args:
        batch_size, num_q_heads, num_kv_heads, head_dim, page_size: shapes.
        max_pages: page-table width (pages per request at most).
        topk_pages: pages listed per (request, KV head), local pages included.
        local_pages: trailing pages always attended (the last, partial page among them).
        device: CUDA device.
        block_p: pages per scoring program.
    """

    def __init__(self, batch_size: int, num_q_heads: int, num_kv_heads: int, head_dim: int,
                 page_size: int, max_pages: int, topk_pages: int, local_pages: int = 1,
                 device: str | torch.device = "cuda", block_p: int = 64) -> None:
        import torch

        self.batch_size, self.num_q_heads, self.num_kv_heads = batch_size, num_q_heads, num_kv_heads
        self.head_dim, self.page_size, self.max_pages = head_dim, page_size, max_pages
        self.topk_pages, self.local_pages, self.block_p = topk_pages, local_pages, block_p
        if head_dim & (head_dim - 1):
            raise ValueError(f"head_dim must be a power of two, got {head_dim}")
        self.scores = torch.empty((batch_size * num_kv_heads, max_pages), dtype=torch.float32,
                                  device=device)

    def __call__(self, q: torch.Tensor, key_means: torch.Tensor, page_table: torch.Tensor,
                 seq_lens: torch.Tensor, out_indices: torch.Tensor, out_offset: int = 0) -> None:
        """Write ``batch * kv_heads * topk_pages`` flattened page ids into ``out_indices``
        (int32) from ``out_offset`` on; ``q`` ``[batch, q_heads, dim]`` contiguous,
        ``key_means`` ``[pages, kv_heads, dim]`` contiguous, ``page_table`` int32
        ``[batch, >= max_pages]`` with unit column stride, ``seq_lens`` ``[batch]`` (tokens)."""
        import triton

        score_kernel, select_kernel = _kernels()
        group = self.num_q_heads // self.num_kv_heads
        rows = self.batch_size * self.num_kv_heads
        score_kernel[(rows, triton.cdiv(self.max_pages, self.block_p))](
            q, key_means, page_table, seq_lens, self.scores,
            page_table.stride(0), self.max_pages,
            KV_HEADS=self.num_kv_heads, GROUP=group, GROUP_P2=_next_pow2(group),
            HEAD_DIM=self.head_dim, PAGE_SIZE=self.page_size, LOCAL_PAGES=self.local_pages,
            BLOCK_P=self.block_p, num_warps=4)
        block_n = max(_next_pow2(self.max_pages), 16)
        select_kernel[(rows,)](
            self.scores, page_table, seq_lens, out_indices,
            page_table.stride(0), self.max_pages, out_offset,
            KV_HEADS=self.num_kv_heads, PAGE_SIZE=self.page_size, TOPK=self.topk_pages,
            LOCAL_PAGES=self.local_pages, LOCAL_P2=max(_next_pow2(self.local_pages), 2),
            BLOCK_N=block_n, num_warps=8 if block_n >= 2048 else 4)
