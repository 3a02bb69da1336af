"""Block top-k page selection (scoring + top-k), CUDA-graph friendly (fixed grids and
buffers, no host sync).

1. scoring (``kernels.select.score_kernel``, Triton), grid ``(batch * kv_heads,
   cdiv(max_pages, block_p))``: each program reads the page means (compressed keys,
   stored by request and logical page, so a contiguous block) of ``block_p`` pages of
   one (request, KV head), dots them with the sum of the group's query heads in
   float32 and writes the scores (``float32 [batch * kv_heads, max_pages]``; local
   pages ``+inf``, pages past the end ``-inf``) and each row's page count. Spreading
   the pages over programs keeps every SM streaming the compressed keys, the only
   large read.
2. top-k, one of two kernels (``topk``), both writing each row's ``topk_pages``
   physical page ids into ``[batch * kv_heads, topk_pages]`` (in no fixed order: the
   decode finds the partial last page by its id):

   * ``"bitonic"`` (``kernels.select.select_kernel``, Triton), grid ``(rows,)``: one
     program per row, ``tl.topk``'s bitonic top-k of the ``m = topk_pages -
     local_pages`` best candidates over the order-preserving integer image of the
     scores packed with the page number in int64 (ties: lower page first), then the
     local pages. Faster for rows of up to 1,024 pages, at any batch size.
   * ``"flashinfer"`` (:class:`FlashinferPageTopk`): flashinfer's radix top-k fused with
     the page-table lookup, which spreads a long row over several CTAs. Faster for
     rows of 2,048 pages and more (the long-CoT regime), at any batch size.

   ``"auto"`` picks by :func:`default_topk`: the faster kernel of the grid runs
   (``kinetics bench --grid`` times both on every cell; benchmarks/RESULTS.md).

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


def prev_pow2(n: int) -> int:
    """Largest power of two <= ``n`` (1 for ``n <= 1``)."""
    return 1 << max(int(n).bit_length() - 1, 0)


TOPK_KERNELS = ("bitonic", "flashinfer")
BITONIC_MAX_PAGES = 1024  # "auto": the one-program bitonic top-k up to this row length
ROW_STATES_BYTES = 1 << 20  # flashinfer's multi-CTA radix top-k row states (zeroed)


BLOCK_P = 128  # pages per scoring program


def default_topk(max_pages: int) -> str:
    """The top-k kernel ``topk="auto"`` runs for rows of ``max_pages`` pages:
    ``"bitonic"`` up to BITONIC_MAX_PAGES, else ``"flashinfer"``."""
    return "bitonic" if max_pages <= BITONIC_MAX_PAGES else "flashinfer"


class FlashinferPageTopk:
    """Each row's ``topk_pages`` best-scoring pages as physical page ids, by flashinfer's
    radix top-k fused with the page-table lookup (``top_k_page_table_transform``),
    called with buffers owned here (no allocation per call: the launch captures into a
    CUDA graph). flashinfer 0.6.1.
    """

    def __init__(self, rows: int, kv_heads: int, topk_pages: int,
                 device: str | torch.device) -> None:
        import torch
        from flashinfer.topk import get_topk_module

        self.op = get_topk_module().radix_topk_page_table_transform
        self.topk_pages = topk_pages
        self.row_states = torch.zeros(ROW_STATES_BYTES, dtype=torch.uint8, device=device)
        self.row_to_batch = (torch.arange(rows, dtype=torch.int32, device=device) // kv_heads
                             if kv_heads > 1 else None)

    def __call__(self, scores: torch.Tensor, lengths: torch.Tensor, page_table: torch.Tensor,
                 out_pages: torch.Tensor) -> None:
        """Top ``topk_pages`` of ``scores`` ``[rows, max_pages]`` (the first ``lengths[row]``
        of each row), mapped through ``page_table`` ``[batch, max_pages]``, into
        ``out_pages`` (int32 ``[rows, topk_pages]``)."""
        self.op(scores, out_pages, page_table, self.row_to_batch, lengths, self.row_states,
                self.topk_pages)


class PageSelector:
    """Launches the scoring and one top-k kernel for fixed shapes into fixed buffers.

    Args:
        batch_size, num_q_heads, num_kv_heads, head_dim, page_size: shapes.
        max_pages: page-table width (pages per request at most).
        topk_pages: pages listed per (request, KV head), local pages included.
        local_pages: trailing pages always attended (the last, partial page among them).
        device: CUDA device.
        topk: ``"bitonic"``, ``"flashinfer"`` or ``"auto"`` (:func:`default_topk`).
        block_p: pages per scoring program.
        score_warps, select_warps: warps per scoring / bitonic top-k program.

    The scoring defaults (128 pages, 4 warps) come from a sweep of the scoring's launch
    options over GQA groups 4 and 8 (benchmarks/RESULTS.md).
    """

    def __init__(self, batch_size: int, num_q_heads: int, num_kv_heads: int, head_dim: int,
                 page_size: int, max_pages: int, topk_pages: int, local_pages: int = 1,
                 device: str | torch.device = "cuda", topk: str = "auto",
                 block_p: int = BLOCK_P,
                 score_warps: int = 4, select_warps: int = 8) -> None:
        import torch

        if head_dim & (head_dim - 1):
            raise ValueError(f"head_dim must be a power of two, got {head_dim}")
        rows = batch_size * num_kv_heads
        if topk == "auto":
            topk = default_topk(max_pages)
        if topk not in TOPK_KERNELS:
            raise ValueError(f"topk must be 'auto' or one of {TOPK_KERNELS}, got {topk!r}")
        self.batch_size, self.num_q_heads, self.num_kv_heads = batch_size, num_q_heads, num_kv_heads
        self.head_dim, self.page_size, self.max_pages = head_dim, page_size, max_pages
        self.topk_pages, self.local_pages, self.block_p = topk_pages, local_pages, block_p
        self.score_warps, self.select_warps, self.topk = score_warps, select_warps, topk
        self.scores = torch.empty((rows, max_pages), dtype=torch.float32, device=device)
        self.row_pages = torch.zeros(rows, dtype=torch.int32, device=device)
        self.flashinfer = (FlashinferPageTopk(rows, num_kv_heads, topk_pages, device)
                           if topk == "flashinfer" else None)

    def score(self, q: torch.Tensor, key_means: torch.Tensor, seq_lens: torch.Tensor) -> None:
        """Only the scoring launch: scores into :attr:`scores` (``float32 [batch *
        kv_heads, max_pages]``), page counts into :attr:`row_pages`."""
        import triton

        from kinetics.attention.kernels.select import score_kernel

        group = self.num_q_heads // self.num_kv_heads
        chunks = triton.cdiv(self.max_pages, self.block_p)
        score_kernel[(self.batch_size * self.num_kv_heads, chunks)](
            q, key_means, seq_lens, self.scores, self.row_pages, self.max_pages,
            KV_HEADS=self.num_kv_heads, GROUP=group,
            HEAD_DIM=self.head_dim, PAGE_SIZE=self.page_size, LOCAL_PAGES=self.local_pages,
            BLOCK_P=self.block_p, num_warps=self.score_warps)

    def __call__(self, q: torch.Tensor, key_means: torch.Tensor, page_table: torch.Tensor,
                 seq_lens: torch.Tensor, out_pages: torch.Tensor) -> None:
        """Write each (request, KV head) row's ``topk_pages`` physical page ids into
        ``out_pages`` (int32 ``[batch * kv_heads, topk_pages]``, contiguous); ``q``
        ``[batch, q_heads, dim]`` contiguous, ``key_means`` ``[batch, kv_heads, max_pages,
        dim]`` contiguous, ``page_table`` int32 ``[batch, max_pages]`` contiguous,
        ``seq_lens`` ``[batch]`` (tokens)."""
        self.score(q, key_means, seq_lens)
        if self.flashinfer is not None:
            self.flashinfer(self.scores, self.row_pages, page_table, out_pages)
            return
        from kinetics.attention.kernels.select import select_kernel

        k_p2 = max(next_pow2(self.topk_pages - self.local_pages), 2)
        select_kernel[(self.batch_size * self.num_kv_heads,)](
            self.scores, page_table, seq_lens, out_pages, page_table.stride(0),
            self.max_pages, KV_HEADS=self.num_kv_heads, PAGE_SIZE=self.page_size,
            TOPK=self.topk_pages, LOCAL_PAGES=self.local_pages,
            LOCAL_P2=max(next_pow2(self.local_pages), 2),
            BLOCK_N=max(next_pow2(self.max_pages), 16, k_p2), K_P2=k_p2,
            num_warps=self.select_warps)
