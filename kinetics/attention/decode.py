"""GPU decode over a :class:`PagedKVCache`: dense, and block top-k in two steps.

Every class plans once into buffers it owns, so a step is a fixed sequence of kernel
launches that a CUDA graph can capture and replay.

* :class:`FlashinferDenseDecode`: flashinfer paged decode, one request per batch row
  with all its KV heads; the page list of request ``r`` is its page table row.
* Block top-k = :class:`TopkPageSelection` (Triton scoring + top-k,
  :mod:`kinetics.attention.select`, writes ``topk_pages`` page ids per (request, KV
  head) into its index buffer) followed by one sparse attention over those pages:
  :class:`FlashinferSparseAttention` (flashinfer paged decode) or
  :class:`TritonSparseAttention` (our split-KV Triton decode,
  :mod:`kinetics.attention.kernels.sparse_decode`). Both treat each (request, KV head)
  pair as a row with one KV head and the group's query heads (``q`` viewed as
  ``[batch * kv_heads, group, dim]``), over the cache viewed as one-head pages
  (``k_pages.view(-1, 1, page_size, dim)``, row ``page * kv_heads + head``); the last
  listed page is the request's last, partial page. :class:`BlockTopkDecode` runs the
  two; :func:`flashinfer_blocktopk_decode` and :func:`triton_blocktopk_decode` build
  it. Every request must hold at least ``topk_pages`` pages.

flashinfer and triton import lazily (inside ``__init__``), so importing this module
needs only torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from kinetics.attention.select import next_pow2

if TYPE_CHECKING:
    import torch

    from kinetics.attention.cache import PagedKVCache

WORKSPACE_BYTES = 128 * 1024 * 1024  # flashinfer's recommended float workspace
LOG2_E = 1.4426950408889634


class FlashinferDenseDecode:
    """Dense paged decode through ``flashinfer.BatchDecodeWithPagedKVCacheWrapper``.

    Args:
        cache: the KV cache (CUDA, HND layout); its page table and lengths are read at
            construction (plan) time.
        num_q_heads: query heads (a multiple of the cache's KV heads).
        use_tensor_cores: flashinfer's tensor-core decode path (default: CUDA cores).
    """

    def __init__(self, cache: PagedKVCache, num_q_heads: int, use_tensor_cores: bool = False
                 ) -> None:
        import flashinfer
        import torch

        dev = cache.device
        b = cache.batch_size
        n_pages = cache.num_request_pages().to(torch.int32)
        indptr = torch.zeros(b + 1, dtype=torch.int32, device=dev)
        indptr[1:] = torch.cumsum(n_pages, 0)
        rows = torch.arange(cache.page_table.shape[1], device=dev)
        used = rows[None, :] < n_pages[:, None]
        indices = cache.page_table[used].to(torch.int32).contiguous()
        last = cache.last_page_len().to(torch.int32)
        self.cache, self.num_q_heads = cache, num_q_heads
        self._indptr, self._indices, self._last = indptr, indices.clone(), last.clone()
        self.workspace = torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=dev)
        self.wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self.workspace, "HND", use_cuda_graph=True, use_tensor_cores=use_tensor_cores,
            paged_kv_indptr_buffer=self._indptr, paged_kv_indices_buffer=self._indices,
            paged_kv_last_page_len_buffer=self._last)
        self.wrapper.plan(indptr, indices, last, num_q_heads, cache.num_kv_heads,
                          cache.head_dim, cache.page_size, q_data_type=cache.dtype,
                          kv_data_type=cache.dtype)

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write the attention of ``q`` ``[batch, q_heads, dim]`` into ``out`` (same shape)."""
        self.wrapper.run(q, (self.cache.k_pages, self.cache.v_pages), out=out)
        return out


class TopkPageSelection:
    """The selection step of block top-k: page ids chosen by the Triton kernels.

    Args:
        cache: the KV cache (CUDA); every request must hold >= ``topk_pages`` pages.
        num_q_heads: query heads (a multiple of the cache's KV heads).
        topk_pages: pages attended per (request, KV head), the local ones included.
        local_pages: trailing pages always attended (>= 1: the last, partial page).
        selector_options: keyword arguments of :class:`PageSelector` (launch sizes).

    Attributes:
        indices: int32 ``[batch * kv_heads * topk_pages]`` flattened page ids of the last
            selection (row ``r`` at ``[r * topk_pages, (r + 1) * topk_pages)``).
        indptr: int32 ``[rows + 1]`` row offsets into :attr:`indices`.
        last: int32 ``[rows]`` tokens in each row's last (partial) page.
    """

    def __init__(self, cache: PagedKVCache, num_q_heads: int, topk_pages: int,
                 local_pages: int = 1, selector_options: dict | None = None) -> None:
        import torch

        from kinetics.attention.select import PageSelector

        if not 1 <= local_pages <= topk_pages:
            raise ValueError(f"need 1 <= local_pages ({local_pages}) <= topk_pages ({topk_pages})")
        n_pages = cache.num_request_pages()
        if int(n_pages.min()) < topk_pages:
            raise ValueError(f"every request must hold >= {topk_pages} pages; the shortest "
                             f"holds {int(n_pages.min())}")
        dev, h = cache.device, cache.num_kv_heads
        self.rows = cache.batch_size * h
        self.cache, self.num_q_heads, self.topk_pages = cache, num_q_heads, topk_pages
        self.local_pages, self.group = local_pages, num_q_heads // h
        self.indptr = torch.arange(self.rows + 1, dtype=torch.int32, device=dev) * topk_pages
        self.indices = torch.zeros(self.rows * topk_pages, dtype=torch.int32, device=dev)
        self.last = cache.last_page_len().to(torch.int32).repeat_interleave(h).contiguous()
        self.selector = PageSelector(cache.batch_size, num_q_heads, h, cache.head_dim,
                                     cache.page_size, cache.page_table.shape[1], topk_pages,
                                     local_pages, device=dev, **(selector_options or {}))
        self.k_view = cache.k_pages.view(-1, 1, cache.page_size, cache.head_dim)
        self.v_view = cache.v_pages.view(-1, 1, cache.page_size, cache.head_dim)

    def __call__(self, q: torch.Tensor) -> None:
        """Select the pages ``q`` ``[batch, q_heads, dim]`` attends into :attr:`indices`."""
        c = self.cache
        self.selector(q, c.key_means, c.page_table, c.seq_lens, self.indices)

    def selected_page_mask(self) -> torch.Tensor:
        """The last selection as a bool ``[batch, kv_heads, max_pages]`` mask over logical
        page positions (for checks against the reference)."""
        import torch

        c = self.cache
        b, h, p = c.batch_size, c.num_kv_heads, c.page_table.shape[1]
        phys = self.indices.view(b, h, self.topk_pages).long() // h
        # physical page -> logical position, per request
        inverse = torch.full((c.num_pages,), -1, dtype=torch.int64, device=c.device)
        mask = torch.zeros((b, h, p), dtype=torch.bool, device=c.device)
        for r in range(b):
            n = int(c.num_request_pages()[r])
            inverse[c.page_table[r, :n].long()] = torch.arange(n, device=c.device)
            pos = inverse[phys[r]]  # [h, k]
            if bool((pos < 0).any()):
                raise AssertionError(f"request {r}: selected a page it does not own")
            mask[r].scatter_(-1, pos, True)
            inverse[c.page_table[r, :n].long()] = -1
        return mask


class FlashinferSparseAttention:
    """flashinfer paged decode over the pages a :class:`TopkPageSelection` lists.

    The wrapper's page-index buffer is the selection's :attr:`~TopkPageSelection.indices`,
    so a new selection needs no re-plan.
    """

    def __init__(self, selection: TopkPageSelection, use_tensor_cores: bool = False) -> None:
        import flashinfer
        import torch

        sel, c = selection, selection.cache
        self.selection = sel
        self.workspace = torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=c.device)
        self.wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self.workspace, "HND", use_cuda_graph=True, use_tensor_cores=use_tensor_cores,
            paged_kv_indptr_buffer=torch.empty_like(sel.indptr),
            paged_kv_indices_buffer=sel.indices,
            paged_kv_last_page_len_buffer=torch.empty_like(sel.last))
        self.wrapper.plan(sel.indptr, sel.indices.clone(), sel.last, sel.group, 1,
                          c.head_dim, c.page_size, q_data_type=c.dtype, kv_data_type=c.dtype)

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Attention of ``q`` ``[batch, q_heads, dim]`` over the selected pages into ``out``."""
        sel = self.selection
        self.wrapper.run(q.view(sel.rows, sel.group, -1), (sel.k_view, sel.v_view),
                         out=out.view(sel.rows, sel.group, -1))
        return out


class TritonSparseAttention:
    """Our split-KV Triton decode over the pages a :class:`TopkPageSelection` lists.

    Two launches per step: ``splits`` programs per (request, KV head) each attend
    ``topk_pages / splits`` pages, ``tile_pages`` pages per loop step, then a merge.

    Args:
        selection: the selection step whose page list is attended.
        splits: programs per row (default: the largest of 4, 2, 1 dividing topk_pages).
        tile_pages: pages per loop step (default: the largest of 4, 2, 1 dividing
            ``topk_pages / splits``). 4 x 4 measured fastest at the standard size.
        num_warps: warps per partial-attention program.
    """

    def __init__(self, selection: TopkPageSelection, splits: int | None = None,
                 tile_pages: int | None = None, num_warps: int = 4) -> None:
        import torch

        k = selection.topk_pages
        splits = splits or next(s for s in (4, 2, 1) if k % s == 0)
        tile_pages = tile_pages or next(t for t in (4, 2, 1) if (k // splits) % t == 0)
        if k % splits or (k // splits) % tile_pages:
            raise ValueError(f"topk_pages ({k}) must split into {splits} parts "
                             f"of whole tiles of {tile_pages} pages")
        c = selection.cache
        self.selection, self.splits, self.tile_pages = selection, splits, tile_pages
        self.num_warps = num_warps
        self.m_rows = max(16, next_pow2(selection.group))  # tl.dot needs >= 16 rows
        self.g_p2 = max(2, next_pow2(selection.group))
        self.part_o = torch.empty((selection.rows, splits, self.m_rows, c.head_dim),
                                  dtype=torch.float32, device=c.device)
        self.part_ml = torch.empty((selection.rows, splits, self.m_rows, 2),
                                   dtype=torch.float32, device=c.device)
        self.qk_scale = LOG2_E / math.sqrt(c.head_dim)  # the kernel's softmax is base 2

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Attention of ``q`` ``[batch, q_heads, dim]`` over the selected pages into ``out``."""
        from kinetics.attention.kernels.sparse_decode import (
            sparse_decode_merge,
            sparse_decode_partial,
        )

        sel, c = self.selection, self.selection.cache
        sparse_decode_partial[(sel.rows, self.splits)](
            q, sel.k_view, sel.v_view, sel.indices, sel.last, self.part_o, self.part_ml,
            self.qk_scale, GROUP=sel.group, HEAD_DIM=c.head_dim, PAGE_SIZE=c.page_size,
            TOPK=sel.topk_pages, SPLITS=self.splits, TILE_PAGES=self.tile_pages,
            M_ROWS=self.m_rows, num_warps=self.num_warps)
        sparse_decode_merge[(sel.rows,)](
            self.part_o, self.part_ml, out, GROUP=sel.group, HEAD_DIM=c.head_dim,
            SPLITS=self.splits, M_ROWS=self.m_rows, G_P2=self.g_p2, num_warps=4)
        return out


SparseAttention = FlashinferSparseAttention | TritonSparseAttention


class BlockTopkDecode:
    """Block top-k decode: a selection step, then a sparse attention over its pages."""

    def __init__(self, selection: TopkPageSelection, attention: SparseAttention) -> None:
        if attention.selection is not selection:
            raise ValueError("the attention must read this selection's page list")
        self.selection, self.attention = selection, attention
        self.cache = selection.cache

    def select(self, q: torch.Tensor) -> None:
        """Run only the selection."""
        self.selection(q)

    def attend(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Run only the sparse attention over the pages selected last."""
        return self.attention(q, out)

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Selection then attention of ``q`` ``[batch, q_heads, dim]`` into ``out``."""
        self.selection(q)
        return self.attention(q, out)

    def selected_page_mask(self) -> torch.Tensor:
        """See :meth:`TopkPageSelection.selected_page_mask`."""
        return self.selection.selected_page_mask()


def flashinfer_blocktopk_decode(cache: PagedKVCache, num_q_heads: int, topk_pages: int,
                                local_pages: int = 1, use_tensor_cores: bool = False
                                ) -> BlockTopkDecode:
    """Triton selection + flashinfer paged decode over the selected pages."""
    selection = TopkPageSelection(cache, num_q_heads, topk_pages, local_pages)
    return BlockTopkDecode(selection, FlashinferSparseAttention(selection, use_tensor_cores))


def triton_blocktopk_decode(cache: PagedKVCache, num_q_heads: int, topk_pages: int,
                            local_pages: int = 1, **options) -> BlockTopkDecode:
    """Triton selection + Triton split-KV decode (``options``: :class:`TritonSparseAttention`)."""
    selection = TopkPageSelection(cache, num_q_heads, topk_pages, local_pages)
    return BlockTopkDecode(selection, TritonSparseAttention(selection, **options))
