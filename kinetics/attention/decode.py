"""GPU decode over a :class:`PagedKVCache`: dense, and block top-k (one fused kernel, or
selection and attention kernels).

Every class plans once into buffers it owns, so a step is a fixed sequence of kernel
launches that a CUDA graph can capture and replay.

* :class:`FlashinferDenseDecode`: flashinfer paged decode, one request per batch row
  with all its KV heads; the page list of request ``r`` is its page table row. By
  default its tensor-core path with the ``fa2`` backend, the faster of flashinfer's
  paths in the grid runs (benchmarks/RESULTS.md).
* :class:`TritonPagedDecode`: dense paged decode in Triton that reads the page table
  and lengths on the device (no plan: one CUDA graph serves changing lengths; the paged
  generation engine's dense decode).
* Block top-k, built by :func:`build_blocktopk_decode` (``impl``; ``"auto"``:
  :func:`default_impl`, the one that measured faster for the shape):

  * ``"fused"``: :class:`FusedBlockTopkDecode`, scoring, selection and split-KV
    attention of each (request, KV head) row in one Triton kernel per step
    (:mod:`kinetics.attention.kernels.fused_decode`; launch:
    :func:`choose_fused_launch`); requests may hold any number of pages;
  * ``"separate"``: :class:`BlockTopkDecode` = :class:`TopkPageSelection` (Triton
    scoring + a top-k kernel, :mod:`kinetics.attention.select`; writes ``topk_pages``
    physical page ids per row) followed by :class:`TritonSparseAttention` (split-KV
    Triton decode over those pages, :mod:`kinetics.attention.kernels.sparse_decode`).
    Every request must hold at least ``topk_pages`` pages.

flashinfer and triton import lazily (inside ``__init__``), so importing this module
needs only torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinetics.attention.select import next_pow2, prev_pow2

if TYPE_CHECKING:
    import torch

    from kinetics.attention.cache import PagedKVCache

WORKSPACE_BYTES = 128 * 1024 * 1024  # flashinfer's recommended float workspace
LOG2_E = 1.4426950408889634
LARGE_TILE_TOKENS = 128  # tokens per attention loop step below WIDE_ROWS rows
SMALL_TILE_TOKENS = 64  # ... and from WIDE_ROWS rows up
WIDE_ROWS = 256  # (request, KV head) rows from which the smaller tile streams faster


INTERPRETED_SMS = 132  # SMs assumed off a GPU (Triton's interpreter): an H200's


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (INTERPRETED_SMS off a GPU)."""
    import torch

    if device.type != "cuda":
        return INTERPRETED_SMS
    return torch.cuda.get_device_properties(device).multi_processor_count


def tile_pages_for(rows: int, page_size: int) -> int:
    """Pages per attention tile: LARGE_TILE_TOKENS tokens (SMALL_TILE_TOKENS from WIDE_ROWS
    rows up), at least the 16 tokens ``tl.dot`` needs."""
    tile_tokens = SMALL_TILE_TOKENS if rows >= WIDE_ROWS else LARGE_TILE_TOKENS
    return max(tile_tokens // page_size, -(-16 // page_size))


def choose_launch(rows: int, list_len: int, page_size: int, sms: int) -> tuple[int, int]:
    """``(tile_pages, splits)`` of the sparse attention for ``rows`` (request, KV head)
    rows listing ``list_len`` pages of ``page_size`` tokens on ``sms`` SMs.

    A tile is LARGE_TILE_TOKENS tokens (SMALL_TILE_TOKENS from WIDE_ROWS rows up) and a
    row is split into ``max(2, prev_pow2(sms // rows))`` programs at most one per tile:
    about one program per SM while rows are few, each streaming several tiles so the
    loop's loads pipeline (the rule chosen by a sweep of launch options, recorded in
    benchmarks/RESULTS.md).
    """
    tile_pages = tile_pages_for(rows, page_size)
    tiles = -(-list_len // tile_pages)
    splits = max(2, prev_pow2(sms // max(rows, 1)))
    return tile_pages, min(splits, prev_pow2(tiles))


def page_mask_from_ids(cache: PagedKVCache, pages: torch.Tensor) -> torch.Tensor:
    """A selection given as physical page ids ``pages`` (int32 ``[batch * kv_heads, n]``,
    row ``request * kv_heads + head``, -1 for an unused slot) as a bool ``[batch,
    kv_heads, max_pages]`` mask over logical page positions (for checks against the
    reference). AssertionError if a row lists a page its request does not own."""
    import torch

    c = cache
    b, h, p = c.batch_size, c.num_kv_heads, c.page_table.shape[1]
    phys = pages.view(b, h, -1).long()
    # physical page -> logical position, per request
    inverse = torch.full((c.num_pages + 1,), -1, dtype=torch.int64, device=c.device)
    mask = torch.zeros((b, h, p + 1), dtype=torch.bool, device=c.device)
    for r in range(b):
        n = int(c.num_request_pages()[r])
        inverse[c.page_table[r, :n].long()] = torch.arange(n, device=c.device)
        listed = phys[r] >= 0
        pos = torch.where(listed, inverse[phys[r].clamp(min=0)], p)  # [h, k]; unused -> p
        if bool((pos < 0).any()):
            raise AssertionError(f"request {r}: selected a page it does not own")
        mask[r].scatter_(-1, pos, True)
        inverse[c.page_table[r, :n].long()] = -1
    return mask[..., :p]


class FlashinferDenseDecode:
    """Dense paged decode through ``flashinfer.BatchDecodeWithPagedKVCacheWrapper``.

    Args:
        cache: the KV cache (CUDA, HND layout); its page table and lengths are read at
            construction (plan) time.
        num_q_heads: query heads (a multiple of the cache's KV heads).
        use_tensor_cores: flashinfer's tensor-core decode path (default) or its CUDA-core one.
        backend: flashinfer backend of the tensor-core path (``"fa2"``; ``"auto"`` picks
            ``fa3`` on Hopper, far slower at decode: benchmarks/RESULTS.md).
    """

    def __init__(self, cache: PagedKVCache, num_q_heads: int, use_tensor_cores: bool = True,
                 backend: str = "fa2") -> None:
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
            paged_kv_last_page_len_buffer=self._last,
            backend=backend if use_tensor_cores else "auto")
        self.wrapper.plan(indptr, indices, last, num_q_heads, cache.num_kv_heads,
                          cache.head_dim, cache.page_size, q_data_type=cache.dtype,
                          kv_data_type=cache.dtype)

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write the attention of ``q`` ``[batch, q_heads, dim]`` into ``out`` (same shape)."""
        self.wrapper.run(q, (self.cache.k_pages, self.cache.v_pages), out=out)
        return out


MAX_DENSE_SPLITS = 32  # Triton dense decode: programs per row at most
DENSE_WAVES = 4  # ... aiming at about this many programs per SM


def triton_head_dim(head_dim: int) -> bool:
    """Whether the Triton decode kernels take ``head_dim`` (a power of two >= 16:
    ``tl.arange`` and ``tl.dot`` shapes)."""
    return head_dim >= 16 and not head_dim & (head_dim - 1)


def check_head_dim(head_dim: int) -> None:
    """ValueError unless :func:`triton_head_dim`."""
    if not triton_head_dim(head_dim):
        raise ValueError(f"head_dim must be a power of two >= 16, got {head_dim}")


def choose_dense_launch(rows: int, page_size: int, sms: int) -> tuple[int, int]:
    """``(tile_pages, splits)`` of :class:`TritonPagedDecode` for ``rows`` (request, KV
    head) rows on ``sms`` SMs: tiles as :func:`choose_launch`, and about DENSE_WAVES
    programs per SM (a power of two, 1 to MAX_DENSE_SPLITS per row): the run a split
    attends shrinks with its request, so short requests leave programs idle, long ones
    keep every SM streaming."""
    tile_pages = tile_pages_for(rows, page_size)
    splits = min(MAX_DENSE_SPLITS, max(1, prev_pow2(DENSE_WAVES * sms // max(rows, 1))))
    return tile_pages, splits


class TritonPagedDecode:
    """Dense paged decode by Triton that reads the page table and lengths on the device
    when it runs (:mod:`kinetics.attention.kernels.paged_decode`, then the split merge):
    no plan, so one CUDA graph of it serves a batch whose lengths change every step.

    Args:
        cache: the KV cache (CUDA, or CPU under ``TRITON_INTERPRET=1``); requests may
            hold any number of tokens up to its table's width (an empty one gets zeros).
        num_q_heads: query heads (a multiple of the cache's KV heads).
        splits, tile_pages: launch shape (default :func:`choose_dense_launch`).
        num_warps, num_stages: of the partial-attention kernel.
    """

    def __init__(self, cache: PagedKVCache, num_q_heads: int, splits: int | None = None,
                 tile_pages: int | None = None, num_warps: int = 4, num_stages: int = 3
                 ) -> None:
        import torch

        h = cache.num_kv_heads
        if num_q_heads % h:
            raise ValueError(f"{num_q_heads} query heads do not divide into {h} KV heads")
        check_head_dim(cache.head_dim)
        self.rows, self.group = cache.batch_size * h, num_q_heads // h
        auto_tile, auto_splits = choose_dense_launch(self.rows, cache.page_size,
                                                     sm_count(cache.device))
        self.tile_pages = auto_tile if tile_pages is None else tile_pages
        self.splits = auto_splits if splits is None else splits
        if self.tile_pages * cache.page_size < 16 or self.splits < 1:
            raise ValueError("a tile needs >= 16 tokens and a row >= 1 split")
        self.cache, self.num_q_heads = cache, num_q_heads
        self.num_warps, self.num_stages = num_warps, num_stages
        self.part_o = torch.empty((self.rows, self.splits, self.group, cache.head_dim),
                                  dtype=torch.float32, device=cache.device)
        self.part_ml = torch.empty((self.rows, self.splits, self.group, 2),
                                   dtype=torch.float32, device=cache.device)
        self.qk_scale = LOG2_E / math.sqrt(cache.head_dim)

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Attention of ``q`` ``[batch, q_heads, dim]`` (contiguous) over each request's
        tokens into ``out`` (same shape)."""
        from kinetics.attention.kernels.paged_decode import paged_dense_partial
        from kinetics.attention.kernels.sparse_decode import merge_splits

        c = self.cache
        paged_dense_partial[(self.rows, self.splits)](
            q, c.k_pages, c.v_pages, c.page_table, c.seq_lens, self.part_o, self.part_ml,
            self.qk_scale, c.page_table.stride(0), KV_HEADS=c.num_kv_heads, GROUP=self.group,
            HEAD_DIM=c.head_dim, PAGE_SIZE=c.page_size, TILE_PAGES=self.tile_pages,
            M_ROWS=max(16, next_pow2(self.group)), num_warps=self.num_warps,
            num_stages=self.num_stages)
        merge_splits[(self.rows,)](
            self.part_o, self.part_ml, out, GROUP=self.group,
            G_P2=max(2, next_pow2(self.group)), HEAD_DIM=c.head_dim, SPLITS=self.splits,
            SPLIT_BLOCK=min(16, max(2, next_pow2(self.splits))), num_warps=4)
        return out


class TopkPageSelection:
    """The selection step of block top-k: page ids chosen by the selection kernels.

    Args:
        cache: the KV cache (CUDA); every request must hold >= ``topk_pages`` pages.
        num_q_heads: query heads (a multiple of the cache's KV heads).
        topk_pages: pages attended per (request, KV head), the local ones included.
        local_pages: trailing pages always attended (>= 1: the last, partial page).
        topk: the top-k kernel, ``"auto"``, ``"bitonic"`` or ``"flashinfer"``
            (:class:`kinetics.attention.select.PageSelector`).

    Attributes:
        pages: int32 ``[batch * kv_heads, topk_pages]`` physical page ids of the last
            selection, row ``request * kv_heads + head``, in no fixed order.
    """

    def __init__(self, cache: PagedKVCache, num_q_heads: int, topk_pages: int,
                 local_pages: int = 1, topk: str = "auto") -> None:
        import torch

        from kinetics.attention.select import PageSelector

        if not 1 <= local_pages <= topk_pages:
            raise ValueError(f"need 1 <= local_pages ({local_pages}) <= topk_pages ({topk_pages})")
        n_pages = cache.num_request_pages()
        if int(n_pages.min()) < topk_pages:
            raise ValueError(f"every request must hold >= {topk_pages} pages; the shortest "
                             f"holds {int(n_pages.min())}")
        h = cache.num_kv_heads
        self.rows = cache.batch_size * h
        self.cache, self.num_q_heads, self.topk_pages = cache, num_q_heads, topk_pages
        self.local_pages, self.group = local_pages, num_q_heads // h
        self.pages = torch.zeros((self.rows, topk_pages), dtype=torch.int32, device=cache.device)
        self.selector = PageSelector(cache.batch_size, num_q_heads, h, cache.head_dim,
                                     cache.page_size, cache.page_table.shape[1], topk_pages,
                                     local_pages, device=cache.device, topk=topk)

    def __call__(self, q: torch.Tensor) -> None:
        """Select the pages ``q`` ``[batch, q_heads, dim]`` attends into :attr:`pages`."""
        c = self.cache
        self.selector(q, c.key_means, c.page_table, c.seq_lens, self.pages)

    def selected_page_mask(self) -> torch.Tensor:
        """The last selection as a bool ``[batch, kv_heads, max_pages]`` mask over logical
        page positions (for checks against the reference)."""
        return page_mask_from_ids(self.cache, self.pages)


class TritonSparseAttention:
    """Split-KV Triton decode over the pages a :class:`TopkPageSelection` lists.

    Two launches per step: ``splits`` programs per (request, KV head) row each attend
    ``tiles`` tiles of ``tile_pages`` listed pages (the row's whole query group in one
    tile, online softmax), then a merge. The request's last page is found by its id,
    so the list may come in any order.

    Args:
        selection: the selection step whose page list is attended.
        splits: programs per row (default: :func:`choose_launch` on the device's SMs).
        tile_pages: pages per loop step, at least 16 tokens (default: :func:`choose_launch`).
        num_warps: warps per partial-attention program.
        num_stages: software-pipelining stages of the partial-attention loop.
    """

    def __init__(self, selection: TopkPageSelection, splits: int | None = None,
                 tile_pages: int | None = None, num_warps: int = 4, num_stages: int = 3
                 ) -> None:
        import torch

        c, k = selection.cache, selection.topk_pages
        if splits is None or tile_pages is None:
            sms = sm_count(c.device)
            auto_tile, auto_splits = choose_launch(selection.rows, k, c.page_size, sms)
            tile_pages = auto_tile if tile_pages is None else tile_pages
            splits = auto_splits if splits is None else splits
        if tile_pages < 1 or tile_pages * c.page_size < 16:
            raise ValueError(f"a tile of {tile_pages} pages of {c.page_size} tokens is under "
                             "the 16 tokens tl.dot needs")
        self.selection, self.tile_pages, self.num_warps = selection, tile_pages, num_warps
        self.num_stages = num_stages
        self.tiles = -(-k // (splits * tile_pages))  # tiles per split
        self.splits = -(-k // (self.tiles * tile_pages))
        self.part_o = torch.empty((selection.rows, self.splits, selection.group, c.head_dim),
                                  dtype=torch.float32, device=c.device)
        self.part_ml = torch.empty((selection.rows, self.splits, selection.group, 2),
                                   dtype=torch.float32, device=c.device)
        self.qk_scale = LOG2_E / math.sqrt(c.head_dim)  # the kernel's softmax is base 2

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Attention of ``q`` ``[batch, q_heads, dim]`` over the selected pages into ``out``."""
        from kinetics.attention.kernels.sparse_decode import merge_splits, split_decode_partial

        sel, c = self.selection, self.selection.cache
        split_decode_partial[(sel.rows, self.splits)](
            q, c.k_pages, c.v_pages, sel.pages, c.page_table, c.seq_lens, self.part_o,
            self.part_ml, self.qk_scale, c.page_table.stride(0), KV_HEADS=c.num_kv_heads,
            GROUP=sel.group, HEAD_DIM=c.head_dim, PAGE_SIZE=c.page_size,
            LIST_LEN=sel.topk_pages, TILE_PAGES=self.tile_pages, TILES=self.tiles,
            M_ROWS=max(16, next_pow2(sel.group)), num_warps=self.num_warps,
            num_stages=self.num_stages)
        merge_splits[(sel.rows,)](
            self.part_o, self.part_ml, out, GROUP=sel.group, G_P2=max(2, next_pow2(sel.group)),
            HEAD_DIM=c.head_dim, SPLITS=self.splits,
            SPLIT_BLOCK=min(16, max(2, next_pow2(self.splits))), num_warps=4)
        return out


class BlockTopkDecode:
    """Block top-k decode: a selection step, then a sparse attention over its pages."""

    def __init__(self, selection: TopkPageSelection, attention: TritonSparseAttention) -> None:
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


MAX_CANDIDATES = 1024  # fused: candidates per row (splits x chunks x k) aimed at
MAX_CHUNK_PAGES = 1024  # fused: pages per chunk top-k at most
MAX_SPLITS = 8  # fused: programs per row at most (the faster cap explored: benchmarks/RESULTS.md)
MAX_ROW_PAGES = 1 << 24  # fused: pages a row may hold (the page number's bits in a pack)
PHASE_STAMP_POINTS = 6  # fused, record_phases: boundaries per program (kernels' STAMP_POINTS)


@dataclass(frozen=True)
class FusedLaunch:
    """Launch shape of :class:`FusedBlockTopkDecode`: ``splits`` programs per row, each
    scoring ``chunks`` chunks of ``chunk_pages`` pages and attending ``tiles`` tiles of
    ``tile_pages`` list positions; ``one_launch``: one kernel launch per step (the
    splits of a row wait for each other) instead of two."""

    splits: int
    chunk_pages: int
    chunks: int
    tile_pages: int
    tiles: int
    one_launch: bool


def candidate_width(topk_pages: int, local_pages: int) -> int:
    """Candidates each chunk keeps: ``topk_pages - local_pages`` rounded up to a power
    of two (at least 2)."""
    return max(next_pow2(topk_pages - local_pages), 2)


def choose_fused_launch(rows: int, max_pages: int, topk_pages: int, local_pages: int,
                        page_size: int, sms: int, splits: int | None = None,
                        chunk_pages: int | None = None, tile_pages: int | None = None,
                        one_launch: bool | None = None, interpreted: bool = False
                        ) -> FusedLaunch:
    """The launch of the fused block top-k decode for ``rows`` (request, KV head) rows of
    ``max_pages`` pages of ``page_size`` tokens attending ``topk_pages`` pages, on
    ``sms`` SMs. Any argument given is kept (checked).

    Defaults: ``prev_pow2(sms // rows)`` splits per row (about one program per SM while
    rows are few), at most MAX_SPLITS, at most MAX_CANDIDATES candidates per row, each
    split scoring at least one candidate width of pages and attending at least one
    page; chunks of at most MAX_CHUNK_PAGES pages; tiles as :func:`choose_launch`;
    one launch wherever the grid fits one program per SM (the splits of a row spin on
    each other, so they must all be resident), never under Triton's interpreter (it
    runs programs one after another).
    """
    k_p2 = candidate_width(topk_pages, local_pages)
    if splits is None:
        splits = max(1, prev_pow2(sms // max(rows, 1)))
        splits = min(splits, MAX_SPLITS, max(1, MAX_CANDIDATES // k_p2),
                     prev_pow2(max(max_pages // max(k_p2, 16), 1)), prev_pow2(topk_pages))
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    per_split = -(-max_pages // splits)
    if chunk_pages is None:
        chunk_pages = min(next_pow2(per_split), MAX_CHUNK_PAGES)
    chunk_pages = max(chunk_pages, k_p2, 16)
    if chunk_pages & (chunk_pages - 1):
        raise ValueError(f"chunk_pages must be a power of two, got {chunk_pages}")
    chunks = -(-per_split // chunk_pages)
    share = -(-topk_pages // splits)  # list positions each split attends
    if tile_pages is None:
        tile_pages, _ = choose_launch(rows, topk_pages, page_size, sms)
        tile_pages = min(tile_pages, next_pow2(share))
    tile_pages = max(tile_pages, -(-16 // page_size))
    tiles = -(-share // tile_pages)
    fits = rows * splits <= sms
    if one_launch is None:
        one_launch = splits == 1 or (fits and not interpreted)
    if one_launch and splits > 1 and (interpreted or not fits):
        raise ValueError(f"one launch of {rows} rows x {splits} splits needs every program "
                         f"resident at once ({sms} SMs{', interpreted' if interpreted else ''})")
    return FusedLaunch(splits, chunk_pages, chunks, tile_pages, tiles, one_launch)


def fused_pipeline(rows: int) -> tuple[int, int]:
    """``(block_p, num_stages)`` of the fused kernel for ``rows`` (request, KV head) rows:
    128-page scoring blocks in a 3-stage pipeline, and from WIDE_ROWS rows up (where
    several programs share an SM) 64-page blocks in 5 stages, 2.6-2.8% faster there on
    an H200 and slower at fewer rows (benchmarks/RESULTS.md)."""
    return (64, 5) if rows >= WIDE_ROWS else (128, 3)


class FusedBlockTopkDecode:
    """Block top-k decode in one Triton kernel per step (two where a row's splits cannot
    all be resident): each (request, KV head) row's programs score its page means,
    select its pages and attend them, and the row's last program merges the splits
    (:mod:`kinetics.attention.kernels.fused_decode`).

    Same selection and attention as :func:`kinetics.attention.reference.blocktopk_decode`
    (up to ties and float32 summation order); requests holding ``topk_pages`` pages or
    fewer attend all of them.

    Args:
        cache: the KV cache (CUDA, or CPU under ``TRITON_INTERPRET=1``).
        num_q_heads: query heads (a multiple of the cache's KV heads).
        topk_pages: pages attended per (request, KV head), the local ones included.
        local_pages: trailing pages always attended (>= 1: the last, partial page).
        splits, chunk_pages, tile_pages, one_launch: launch shape
            (:func:`choose_fused_launch`; defaults from the device's SM count).
        block_p: pages per scoring ``tl.dot``; num_stages: software-pipelining stages
            of the kernel's loops (defaults: :func:`fused_pipeline`).
        num_warps: of the kernel.
        record_phases: every step records each program's clocks at its phase boundaries
            into :attr:`phase_stamps` (CUDA only: the interpreter has no clocks).

    Attributes:
        pages: int32 ``[batch * kv_heads, topk_pages]`` physical page ids of the last
            selection (the chosen pages best first, then the local pages; -1 where a
            request holds fewer pages).
        scores: float32 ``[batch * kv_heads, max_pages]`` the last block scores of the
            candidate pages (other entries stale).
        phase_stamps: with ``record_phases``, int64 ``[batch * kv_heads, splits,
            STAMP_POINTS, 2]``: the last step's SM clock (cycles) and global timer (ns) of
            each program at its phase boundaries (start, scored, row arrived, selected,
            attended, finished; :mod:`kinetics.attention.kernels.fused_decode`); else None.
    """

    def __init__(self, cache: PagedKVCache, num_q_heads: int, topk_pages: int,
                 local_pages: int = 1, splits: int | None = None,
                 chunk_pages: int | None = None, tile_pages: int | None = None,
                 one_launch: bool | None = None, block_p: int | None = None,
                 num_warps: int = 4, num_stages: int | None = None,
                 record_phases: bool = False) -> None:
        import os

        import torch

        if not 1 <= local_pages <= topk_pages:
            raise ValueError(f"need 1 <= local_pages ({local_pages}) <= topk_pages ({topk_pages})")
        h = cache.num_kv_heads
        if num_q_heads % h:
            raise ValueError(f"{num_q_heads} query heads do not divide into {h} KV heads")
        check_head_dim(cache.head_dim)
        interpreted = os.environ.get("TRITON_INTERPRET") == "1"
        if record_phases and (interpreted or cache.device.type != "cuda"):
            raise ValueError("record_phases needs a CUDA cache (the interpreter has no clocks)")
        sms = sm_count(cache.device)
        self.rows = cache.batch_size * h
        self.max_pages = cache.page_table.shape[1]
        if self.max_pages * 2 > MAX_ROW_PAGES:
            raise ValueError(f"rows of {self.max_pages} pages: at most {MAX_ROW_PAGES // 2}")
        self.launch = choose_fused_launch(self.rows, self.max_pages, topk_pages, local_pages,
                                          cache.page_size, sms, splits, chunk_pages,
                                          tile_pages, one_launch, interpreted)
        self.cache, self.num_q_heads, self.topk_pages = cache, num_q_heads, topk_pages
        self.local_pages, self.group = local_pages, num_q_heads // h
        default_block_p, default_stages = fused_pipeline(self.rows)
        self.block_p = min(block_p or default_block_p, self.launch.chunk_pages)
        self.num_warps, self.num_stages = num_warps, num_stages or default_stages
        self.k_p2 = candidate_width(topk_pages, local_pages)
        n = self.launch
        dev, rows, d = cache.device, self.rows, cache.head_dim
        self.pages = torch.full((rows, topk_pages), -1, dtype=torch.int32, device=dev)
        self.scores = torch.zeros((rows, self.max_pages), dtype=torch.float32, device=dev)
        self.cands = torch.empty((rows, n.splits * n.chunks * self.k_p2), dtype=torch.int64,
                                 device=dev)
        self.part_o = torch.empty((rows, n.splits, self.group, d), dtype=torch.float32,
                                  device=dev)
        self.part_ml = torch.empty((rows, n.splits, self.group, 2), dtype=torch.float32,
                                   device=dev)
        self.counters = torch.zeros((rows, 2), dtype=torch.int32, device=dev)
        self.phase_stamps = (torch.zeros((rows, n.splits, PHASE_STAMP_POINTS, 2),
                                         dtype=torch.int64, device=dev)
                             if record_phases else None)
        self.qk_scale = LOG2_E / math.sqrt(d)

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Block top-k attention of ``q`` ``[batch, q_heads, dim]`` (contiguous) into ``out``
        (same shape); the selection into :attr:`pages`."""
        self._launch(q, out, compile_only=False)
        return out

    def compile(self, q: torch.Tensor, out: torch.Tensor) -> list:
        """Compile the kernel(s) a call with these arguments launches, without launching
        (Triton's warm-up: fills its cache, e.g. from several processes at once); returns
        Triton's compiled kernels (their registers and shared memory for explorations)."""
        return self._launch(q, out, compile_only=True)

    @staticmethod
    def _kernel():
        """The Triton kernel launched (a subclass may run another of the same signature,
        e.g. an earlier version in an exploration)."""
        from kinetics.attention.kernels.fused_decode import fused_blocktopk_kernel

        return fused_blocktopk_kernel

    def _launch(self, q: torch.Tensor, out: torch.Tensor, compile_only: bool) -> list:
        fused_blocktopk_kernel = self._kernel()
        c, n = self.cache, self.launch
        n_cands = n.splits * n.chunks * self.k_p2
        stamps = self.phase_stamps
        args = (q, c.key_means, c.k_pages, c.v_pages, c.page_table, c.seq_lens, self.scores,
                self.cands, self.pages, self.part_o, self.part_ml, self.counters, out,
                self.counters if stamps is None else stamps, self.qk_scale, self.max_pages,
                c.page_table.stride(0))
        meta = dict(KV_HEADS=c.num_kv_heads, GROUP=self.group, HEAD_DIM=c.head_dim,
                    PAGE_SIZE=c.page_size, TOPK=self.topk_pages,
                    TOPK_P2=next_pow2(self.topk_pages), LOCAL_PAGES=self.local_pages,
                    LOCAL_P2=max(next_pow2(self.local_pages), 2), SPLITS=n.splits,
                    CHUNKS=n.chunks, CHUNK_PAGES=n.chunk_pages, BLOCK_P=self.block_p,
                    K_P2=self.k_p2, CANDS_P2=max(next_pow2(n_cands), self.k_p2),
                    MAXP=MAX_ROW_PAGES,
                    TILE_PAGES=n.tile_pages, TILES=n.tiles,
                    M_ROWS=max(16, next_pow2(self.group)), STAMPS=stamps is not None,
                    num_warps=self.num_warps, num_stages=self.num_stages)
        grid = (self.rows, n.splits)
        compiled = []
        for phase in ((0,) if n.one_launch else (1, 2)):
            if compile_only:
                compiled.append(fused_blocktopk_kernel.warmup(*args, grid=grid, PHASE=phase,
                                                              **meta))
            else:
                fused_blocktopk_kernel[grid](*args, PHASE=phase, **meta)
        return compiled

    def selected_page_mask(self) -> torch.Tensor:
        """The last selection as a bool ``[batch, kv_heads, max_pages]`` mask."""
        return page_mask_from_ids(self.cache, self.pages)


BLOCKTOPK_IMPLS = ("fused", "separate")


def default_impl(rows: int, max_pages: int, topk_pages: int, group: int) -> str:
    """The block top-k implementation ``impl="auto"`` builds for ``rows`` (request, KV
    head) rows of ``max_pages`` pages attending ``topk_pages`` with GQA group ``group``:
    the separate kernels where they measured faster on an H200 (benchmarks/RESULTS.md,
    2026-12-03 grids, both steps timed in every cell): long rows at many rows, where
    each fused program scores several chunks in turn; 2,048-token budgets at few rows
    (and at 16 rows for GQA group 4); rows of 8,192 pages and more at 1-4 rows. The
    fused kernel everywhere else."""
    if topk_pages >= 128 and (rows <= 4 or (rows <= 16 and group <= 4)):
        return "separate"
    if rows <= 4 and max_pages >= 8192:
        return "separate"
    if (rows >= 64 and max_pages >= 4096) or (rows >= 256 and max_pages >= 2048):
        return "separate"
    return "fused"


def build_blocktopk_decode(cache: PagedKVCache, num_q_heads: int, topk_pages: int,
                           local_pages: int = 1, topk: str = "auto", impl: str = "auto",
                           **options) -> FusedBlockTopkDecode | BlockTopkDecode:
    """The block top-k decoder: ``impl="fused"`` (:class:`FusedBlockTopkDecode`,
    ``options`` its launch), ``"separate"`` (selection with the ``topk`` kernel, then the
    Triton split-KV attention, ``options`` of :class:`TritonSparseAttention`), or
    ``"auto"`` (:func:`default_impl`)."""
    if impl == "auto":
        impl = default_impl(cache.batch_size * cache.num_kv_heads, cache.page_table.shape[1],
                            topk_pages, num_q_heads // cache.num_kv_heads)
    if impl == "fused":
        return FusedBlockTopkDecode(cache, num_q_heads, topk_pages, local_pages, **options)
    if impl != "separate":
        raise ValueError(f"impl must be 'auto' or one of {BLOCKTOPK_IMPLS}, got {impl!r}")
    selection = TopkPageSelection(cache, num_q_heads, topk_pages, local_pages, topk)
    return BlockTopkDecode(selection, TritonSparseAttention(selection, **options))
