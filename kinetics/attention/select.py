"""Block top-k page selection (scoring + top-k) as two Triton launches.

Both launches are CUDA-graph friendly (fixed grids, no host sync):

1. scoring (``kernels.select.score_kernel``), grid ``(batch * kv_heads,
   cdiv(max_pages, block_p))``: each program reads the page means (compressed keys,
   stored by request and logical page, so a contiguous block) of ``block_p`` pages of
   one (request, KV head), dots them with the sum of the group's query heads in
   float32 and writes the scores (``float32 [batch * kv_heads, max_pages]``, a few KB
   per request, L2-resident). Spreading the pages over programs keeps every SM
   streaming the compressed keys, the only large read.
2. top-k (``kernels.select.select_kernel``), grid ``(batch * kv_heads,)``: one program
   per (request, KV head) takes the ``m = topk_pages - local_pages`` best candidate
   pages with ``tl.topk``'s bitonic top-k over the order-preserving integer image of
   the float32 scores packed with the page number in int64 (ties: lower page first;
   chosen pages listed best first). It writes the flattened page ids (``page *
   kv_heads + head``, rows of the ``HND`` cache viewed as one-head pages) straight
   into the decode's page-index buffer: the chosen pages, then the ``local_pages``
   local pages with the last, partial page last (the decode takes the last listed
   page as the partial one).

The defaults (128 pages and 8 warps per scoring program, 8 warps per top-k program)
measured fastest on an H100 at the standard size; the variants that measured slower
(one fused launch, a last-block launch, bisection and radix-way threshold searches)
are described in benchmarks/RESULTS.md.

Semantics equal :func:`kinetics.attention.reference.select_pages` up to ties and
float32 summation order (checked by :func:`kinetics.attention.checks.check_selection`).
Every request must hold at least ``topk_pages`` pages, so each (request, KV head)
lists exactly ``topk_pages`` pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def next_pow2(n: int) -> int:
    """Smallest power of two >= ``n`` (1 for ``n <= 1``)."""
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
        score_warps, select_warps: warps per scoring / top-k program.
    """

    def __init__(self, batch_size: int, num_q_heads: int, num_kv_heads: int, head_dim: int,
                 page_size: int, max_pages: int, topk_pages: int, local_pages: int = 1,
                 device: str | torch.device = "cuda", block_p: int = 128,
                 score_warps: int = 8, select_warps: int = 8) -> None:
        import torch

        if head_dim & (head_dim - 1):
            raise ValueError(f"head_dim must be a power of two, got {head_dim}")
        self.batch_size, self.num_q_heads, self.num_kv_heads = batch_size, num_q_heads, num_kv_heads
        self.head_dim, self.page_size, self.max_pages = head_dim, page_size, max_pages
        self.topk_pages, self.local_pages, self.block_p = topk_pages, local_pages, block_p
        self.score_warps, self.select_warps = score_warps, select_warps
        self.scores = torch.empty((batch_size * num_kv_heads, max_pages), dtype=torch.float32,
                                  device=device)

    def score(self, q: torch.Tensor, key_means: torch.Tensor, seq_lens: torch.Tensor) -> None:
        """Only the scoring launch: the candidate pages' scores into :attr:`scores`
        (``float32 [batch * kv_heads, max_pages]``)."""
        import triton

        from kinetics.attention.kernels.select import score_kernel

        group = self.num_q_heads // self.num_kv_heads
        chunks = triton.cdiv(self.max_pages, self.block_p)
        score_kernel[(self.batch_size * self.num_kv_heads, chunks)](
            q, key_means, seq_lens, self.scores, self.max_pages, KV_HEADS=self.num_kv_heads,
            GROUP=group, GROUP_P2=next_pow2(group), HEAD_DIM=self.head_dim,
            PAGE_SIZE=self.page_size, LOCAL_PAGES=self.local_pages, BLOCK_P=self.block_p,
            num_warps=self.score_warps)

    def __call__(self, q: torch.Tensor, key_means: torch.Tensor, page_table: torch.Tensor,
                 seq_lens: torch.Tensor, out_indices: torch.Tensor) -> None:
        """Write ``batch * kv_heads * topk_pages`` flattened page ids into ``out_indices``
        (int32); ``q`` ``[batch, q_heads, dim]`` contiguous, ``key_means`` ``[batch,
        kv_heads, max_pages, dim]`` contiguous, ``page_table`` int32 ``[batch, >=
        max_pages]`` with unit column stride, ``seq_lens`` ``[batch]`` (tokens)."""
        from kinetics.attention.kernels.select import select_kernel

        self.score(q, key_means, seq_lens)
        k_p2 = max(next_pow2(self.topk_pages - self.local_pages), 2)
        select_kernel[(self.batch_size * self.num_kv_heads,)](
            self.scores, page_table, seq_lens, out_indices, page_table.stride(0),
            self.max_pages, KV_HEADS=self.num_kv_heads, PAGE_SIZE=self.page_size,
            TOPK=self.topk_pages, LOCAL_PAGES=self.local_pages,
            LOCAL_P2=max(next_pow2(self.local_pages), 2),
            BLOCK_N=max(next_pow2(self.max_pages), 16, k_p2), K_P2=k_p2,
            num_warps=self.select_warps)
