"""Block top-k page selection (scoring + top-k) as Triton kernels.

Two launches, both CUDA-graph friendly (fixed grids, no host sync):

1. ``_score_kernel``, grid ``(batch * kv_heads, cdiv(max_pages, BLOCK_P))``: each
   program reads the page means (compressed keys, stored by request and logical
   page, so a contiguous block) of ``BLOCK_P`` pages of one (request, KV head), dots them with the sum of the group's
   query heads in float32 and writes the scores (``float32 [batch * kv_heads,
   max_pages]``, a few KB per request, L2-resident). Spreading the pages over
   programs keeps every SM streaming the compressed keys, the only large read.
2. ``_select_kernel``, grid ``(batch * kv_heads,)``: one program per (request, KV
   head) takes the ``m = topk_pages - local_pages`` best candidate pages, either
   (default, ``algorithm="bitonic"``) with ``tl.topk``'s bitonic top-k over the
   order-preserving integer image of the float32 scores packed with the page number
   in int64 (ties: lower page first; chosen pages listed best first), or
   (``"bisect"``) by a 32-step binary search for the ``m``-th largest key (one
   block-wide count per step), keeping the keys above it plus the first ties in page
   order, compacted with a prefix sum. It writes the flattened page ids (``page *
   kv_heads + head``, rows of the ``HND`` cache viewed as one-head pages) straight
   into the decode kernel's page-index buffer: the chosen pages, then the
   ``local_pages`` local pages with the last, partial page last (the decode kernel
   takes the last listed page as the partial one).

Variants (measured slower at the standard size, kept as options): ``fused`` (one
program per (request, KV head) scores all its pages, then selects) and
``last_block`` (one launch: the last scoring program of a row to finish, by an
atomic counter, runs that row's selection).

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
def _kernels() -> dict[str, Any]:
    from kinetics.attention.kernels import select as k

    return {"score": k._score_kernel, "select": k._select_kernel, "fused": k._fused_kernel,
            "score_select": k._score_select_kernel}


def radix_rounds(radix: int) -> int:
    """Rounds of the ``radix``-way threshold search that narrow 2^32 keys to one."""
    return next(r for r in range(1, 33) if (radix + 1) ** r >= 2 ** 32)


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
        fused: one launch (each (request, KV head) program scores all its pages, then
            selects) instead of two (scoring spread over pages, then selection).
        last_block: one launch, scoring spread over pages; the last program of each
            (request, KV head) to finish (atomic counter) runs its selection.
        block_p: pages per scoring step (per program, or per loop step when fused).
            The defaults (128 pages, 8 + 8 warps, bitonic, two launches) measured fastest
            on an H100 at the standard size (benchmarks/RESULTS.md).
        score_warps, select_warps: warps per scoring / selection (or fused) program.
        algorithm: ``"bisect"`` (binary search for the threshold, prefix-sum compaction,
            chosen pages in page order), ``"radix"`` (the same threshold found in
            ``radix_rounds(radix)`` rounds, each counting the keys above ``radix``
            thresholds at once, then the same compaction) or ``"bitonic"`` (``tl.topk``
            on (score, page) packed in int64, chosen pages best first).
        radix: thresholds per round of ``algorithm="radix"`` (a power of two).
    """

    def __init__(self, batch_size: int, num_q_heads: int, num_kv_heads: int, head_dim: int,
                 page_size: int, max_pages: int, topk_pages: int, local_pages: int = 1,
                 device: str | torch.device = "cuda", fused: bool = False, block_p: int = 128,
                 score_warps: int = 8, select_warps: int = 8, algorithm: str = "bitonic",
                 score_stages: int | None = None, last_block: bool = False,
                 radix: int = 16) -> None:
        import torch

        self.batch_size, self.num_q_heads, self.num_kv_heads = batch_size, num_q_heads, num_kv_heads
        self.head_dim, self.page_size, self.max_pages = head_dim, page_size, max_pages
        self.topk_pages, self.local_pages, self.block_p = topk_pages, local_pages, block_p
        self.fused, self.score_warps, self.select_warps = fused, score_warps, select_warps
        self.last_block = last_block
        self.counter = torch.zeros(batch_size * num_kv_heads, dtype=torch.int32, device=device)
        if algorithm not in ("bisect", "bitonic", "radix"):
            raise ValueError(f"algorithm must be 'bisect', 'bitonic' or 'radix', "
                             f"got {algorithm!r}")
        if radix < 2 or radix & (radix - 1):
            raise ValueError(f"radix must be a power of two >= 2, got {radix}")
        self.algorithm, self.radix = algorithm, radix
        self.score_launch = {"num_warps": score_warps}
        if score_stages is not None:
            self.score_launch["num_stages"] = score_stages
        if head_dim & (head_dim - 1):
            raise ValueError(f"head_dim must be a power of two, got {head_dim}")
        self.scores = torch.empty((batch_size * num_kv_heads, max_pages), dtype=torch.float32,
                                  device=device)

    def score(self, q: torch.Tensor, key_means: torch.Tensor, page_table: torch.Tensor,
              seq_lens: torch.Tensor) -> None:
        """Only the scoring launch: the candidate pages' scores into :attr:`scores`
        (``float32 [batch * kv_heads, max_pages]``), for a top-k fused elsewhere."""
        import triton

        chunks = triton.cdiv(self.max_pages, self.block_p)
        _kernels()["score"][(self.batch_size * self.num_kv_heads, chunks)](
            q, key_means, page_table, seq_lens, self.scores,
            page_table.stride(0), self.max_pages, KV_HEADS=self.num_kv_heads,
            PAGE_SIZE=self.page_size, LOCAL_PAGES=self.local_pages,
            GROUP=self.num_q_heads // self.num_kv_heads,
            GROUP_P2=_next_pow2(self.num_q_heads // self.num_kv_heads),
            HEAD_DIM=self.head_dim, BLOCK_P=self.block_p, **self.score_launch)

    def __call__(self, q: torch.Tensor, key_means: torch.Tensor, page_table: torch.Tensor,
                 seq_lens: torch.Tensor, out_indices: torch.Tensor, out_offset: int = 0) -> None:
        """Write ``batch * kv_heads * topk_pages`` flattened page ids into ``out_indices``
        (int32) from ``out_offset`` on; ``q`` ``[batch, q_heads, dim]`` contiguous,
        ``key_means`` ``[batch, kv_heads, max_pages, dim]`` contiguous, ``page_table`` int32
        ``[batch, >= max_pages]`` with unit column stride, ``seq_lens`` ``[batch]`` (tokens)."""
        import triton

        kernels = _kernels()
        group = self.num_q_heads // self.num_kv_heads
        rows = self.batch_size * self.num_kv_heads
        block_n = max(_next_pow2(self.max_pages), 16)
        shapes = dict(KV_HEADS=self.num_kv_heads, PAGE_SIZE=self.page_size,
                      LOCAL_PAGES=self.local_pages)
        k_p2 = max(_next_pow2(self.topk_pages - self.local_pages), 2)
        select = dict(TOPK=self.topk_pages, LOCAL_P2=max(_next_pow2(self.local_pages), 2),
                      BLOCK_N=max(block_n, k_p2), BITONIC=self.algorithm == "bitonic",
                      K_P2=k_p2, RADIX=self.radix if self.algorithm == "radix" else 0,
                      ROUNDS=radix_rounds(self.radix))
        query = dict(GROUP=group, GROUP_P2=_next_pow2(group), HEAD_DIM=self.head_dim)
        if self.fused:
            kernels["fused"][(rows,)](
                q, key_means, page_table, seq_lens, self.scores, out_indices,
                page_table.stride(0), self.max_pages, out_offset, **shapes, **select, **query,
                BLOCK_P=self.block_p, NUM_CHUNKS=triton.cdiv(self.max_pages, self.block_p),
                num_warps=self.select_warps)
            return
        chunks = triton.cdiv(self.max_pages, self.block_p)
        if self.last_block:
            kernels["score_select"][(rows, chunks)](
                q, key_means, page_table, seq_lens, self.scores, out_indices, self.counter,
                page_table.stride(0), self.max_pages, out_offset, **shapes, **select, **query,
                BLOCK_P=self.block_p, NUM_CHUNKS=chunks, **self.score_launch)
            return
        self.score(q, key_means, page_table, seq_lens)
        kernels["select"][(rows,)](
            self.scores, page_table, seq_lens, out_indices,
            page_table.stride(0), self.max_pages, out_offset, **shapes, **select,
            num_warps=self.select_warps)
