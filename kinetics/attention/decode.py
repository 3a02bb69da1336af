"""GPU decode over a :class:`PagedKVCache`: flashinfer paged decode, dense and block top-k.

Both classes plan once (``use_cuda_graph=True`` with buffers they own), so a step is
a fixed sequence of kernel launches that a CUDA graph can capture and replay.

* :class:`FlashinferDenseDecode`: one request per batch row with all its KV heads;
  the page list of request ``r`` is its page table row.
* :class:`FlashinferBlockTopkDecode`: each (request, KV head) pair is its own
  flashinfer request with one KV head and the group's query heads (``q`` viewed as
  ``[batch * kv_heads, group, dim]``), over the cache viewed as one-head pages
  (``k_pages.view(-1, 1, page_size, dim)``, row ``page * kv_heads + head``). Its page
  list holds only the ``topk_pages`` selected pages, written each step by the Triton
  selection kernels (:mod:`kinetics.attention.select`) straight into the
  wrapper's page-index buffer; the last listed page is the request's last, partial
  page. Every request must hold at least ``topk_pages`` pages.

flashinfer and triton import lazily (inside ``__init__``), so importing this module
needs only torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from kinetics.attention.cache import PagedKVCache

WORKSPACE_BYTES = 128 * 1024 * 1024  # flashinfer's recommended float workspace


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


class FlashinferBlockTopkDecode:
    """Block top-k decode: Triton page selection, then flashinfer over the chosen pages.

    Args:
        cache: the KV cache (CUDA); every request must hold >= ``topk_pages`` pages.
        num_q_heads: query heads.
        topk_pages: pages attended per (request, KV head), the local ones included.
        local_pages: trailing pages always attended (>= 1: the last, partial page).
        use_tensor_cores: flashinfer's tensor-core decode path.
        selector_options: keyword arguments of :class:`PageSelector` (kernel variant).
        attention: ``"flashinfer"`` (its paged decode over the selected pages) or
            ``"triton"`` (our split-KV Triton decode, :mod:`._triton_decode`, ``splits``
            programs per (request, KV head), ``tile_pages`` pages per loop step).
        fused_merge: (Triton attention) the last split of each row merges it (one launch
            fewer).
        fused_select: (Triton attention) the top-k runs inside the attention kernel:
            :meth:`select` only scores the pages, and every (row, split) program of
            :meth:`attend` finds its row's top-k pages from the scores by a ``radix``-way
            threshold search (``_triton_decode.sparse_decode_select``), writes its share
            of the page list and attends it. Same selection as ``algorithm="bisect"``
            (chosen pages in page order, ties: lower page first).
    """

    def __init__(self, cache: PagedKVCache, num_q_heads: int, topk_pages: int,
                 local_pages: int = 1, use_tensor_cores: bool = False,
                 selector_options: dict | None = None, attention: str = "flashinfer",
                 splits: int = 8, tile_pages: int = 2, attn_warps: int = 4,
                 attn_stages: int | None = None, fused_merge: bool = False,
                 fused_select: bool = False, radix: int = 16) -> None:
        import torch

        from kinetics.attention.select import PageSelector, radix_rounds

        if not 1 <= local_pages <= topk_pages:
            raise ValueError(f"need 1 <= local_pages ({local_pages}) <= topk_pages ({topk_pages})")
        n_pages = cache.num_request_pages()
        if int(n_pages.min()) < topk_pages:
            raise ValueError(f"every request must hold >= {topk_pages} pages; the shortest "
                             f"holds {int(n_pages.min())}")
        dev = cache.device
        h = cache.num_kv_heads
        rows = cache.batch_size * h
        self.cache, self.num_q_heads, self.topk_pages = cache, num_q_heads, topk_pages
        self.group = num_q_heads // h
        self.indptr = (torch.arange(rows + 1, dtype=torch.int32, device=dev) * topk_pages)
        self.indices = torch.zeros(rows * topk_pages, dtype=torch.int32, device=dev)
        self.last = cache.last_page_len().to(torch.int32).repeat_interleave(h).contiguous()
        self.selector = PageSelector(cache.batch_size, num_q_heads, h, cache.head_dim,
                                     cache.page_size, cache.page_table.shape[1], topk_pages,
                                     local_pages, device=dev, **(selector_options or {}))
        self.k_view = cache.k_pages.view(-1, 1, cache.page_size, cache.head_dim)
        self.v_view = cache.v_pages.view(-1, 1, cache.page_size, cache.head_dim)
        self.fused_select = False
        if attention not in ("flashinfer", "triton"):
            raise ValueError(f"attention must be 'flashinfer' or 'triton', got {attention!r}")
        self.attention = attention
        if attention == "triton":
            if topk_pages % splits or (topk_pages // splits) % tile_pages:
                raise ValueError(f"topk_pages ({topk_pages}) must split into {splits} parts "
                                 f"of whole tiles of {tile_pages} pages")
            self.splits, self.tile_pages, self.fused_merge = splits, tile_pages, fused_merge
            self.fused_select = fused_select
            if radix < 2 or radix & (radix - 1):
                raise ValueError(f"radix must be a power of two >= 2, got {radix}")
            self.radix = radix
            # rounds of the radix-way search until the 2^32 key range is one value
            self.rounds = radix_rounds(radix)
            self.counter = torch.zeros(rows, dtype=torch.int32, device=dev)
            self.attn_launch = {"num_warps": attn_warps}
            if attn_stages is not None:
                self.attn_launch["num_stages"] = attn_stages
            self.m_rows = max(16, 1 << (self.group - 1).bit_length())
            self.part_o = torch.empty((rows, splits, self.m_rows, cache.head_dim),
                                      dtype=torch.float32, device=dev)
            self.part_ml = torch.empty((rows, splits, self.m_rows, 2), dtype=torch.float32,
                                       device=dev)
            return
        import flashinfer

        self.workspace = torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=dev)
        self.wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self.workspace, "HND", use_cuda_graph=True, use_tensor_cores=use_tensor_cores,
            paged_kv_indptr_buffer=torch.empty_like(self.indptr),
            paged_kv_indices_buffer=self.indices,
            paged_kv_last_page_len_buffer=torch.empty_like(self.last))
        self.wrapper.plan(self.indptr, self.indices.clone(), self.last, self.group, 1,
                          cache.head_dim, cache.page_size, q_data_type=cache.dtype,
                          kv_data_type=cache.dtype)

    def select(self, q: torch.Tensor) -> None:
        """Run only the selection: page ids into the wrapper's index buffer."""
        c = self.cache
        if self.fused_select:  # the top-k runs inside the attention kernel
            self.selector.score(q, c.key_means, c.page_table, c.seq_lens)
            return
        self.selector(q, c.key_means, c.page_table, c.seq_lens, self.indices)

    def attend(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Run only the sparse attention over the pages selected last."""
        rows = self.cache.batch_size * self.cache.num_kv_heads
        if self.attention == "triton":
            return self._triton_attend(q, out)
        self.wrapper.run(q.view(rows, self.group, -1), (self.k_view, self.v_view),
                         out=out.view(rows, self.group, -1))
        return out

    def _triton_attend(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        import math

        from kinetics.attention.kernels import sparse_decode as k

        c = self.cache
        rows = c.batch_size * c.num_kv_heads
        scale = 1.4426950408889634 / math.sqrt(c.head_dim)
        consts = dict(GROUP=self.group, HEAD_DIM=c.head_dim, PAGE_SIZE=c.page_size,
                      TOPK=self.topk_pages, SPLITS=self.splits, TILE_PAGES=self.tile_pages,
                      M_ROWS=self.m_rows)
        g_p2 = max(2, 1 << (self.group - 1).bit_length())
        if self.fused_select:
            sel = self.selector
            k.sparse_decode_select[(rows, self.splits)](
                sel.scores, c.page_table, c.seq_lens, q, self.k_view, self.v_view,
                self.indices, self.last, self.part_o, self.part_ml, out, self.counter,
                scale, c.page_table.stride(0), sel.max_pages, KV_HEADS=c.num_kv_heads,
                **consts, G_P2=g_p2, LOCAL_PAGES=sel.local_pages,
                LOCAL_P2=max(2, 1 << (sel.local_pages - 1).bit_length()),
                BLOCK_N=max(16, 1 << (sel.max_pages - 1).bit_length()), RADIX=self.radix,
                ROUNDS=self.rounds, FUSED_MERGE=self.fused_merge, **self.attn_launch)
            if not self.fused_merge:
                k.sparse_decode_merge[(rows,)](
                    self.part_o, self.part_ml, out, GROUP=self.group, HEAD_DIM=c.head_dim,
                    SPLITS=self.splits, M_ROWS=self.m_rows, G_P2=g_p2, num_warps=4)
            return out
        if self.fused_merge:
            k.sparse_decode_fused[(rows, self.splits)](
                q, self.k_view, self.v_view, self.indices, self.last, self.part_o,
                self.part_ml, out, self.counter, scale, **consts, G_P2=g_p2,
                **self.attn_launch)
            return out
        k.sparse_decode_partial[(rows, self.splits)](
            q, self.k_view, self.v_view, self.indices, self.last, self.part_o, self.part_ml,
            scale, **consts, **self.attn_launch)
        k.sparse_decode_merge[(rows,)](
            self.part_o, self.part_ml, out, GROUP=self.group, HEAD_DIM=c.head_dim,
            SPLITS=self.splits, M_ROWS=self.m_rows, G_P2=g_p2, num_warps=4)
        return out

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Selection then attention of ``q`` ``[batch, q_heads, dim]`` into ``out``."""
        self.select(q)
        return self.attend(q, out)

    def selected_page_mask(self) -> torch.Tensor:
        """The last selection as a bool ``[batch, kv_heads, max_pages]`` mask over logical
        page positions (for checks against the reference)."""
        import torch

        c = self.cache
        b, h, p = c.batch_size, c.num_kv_heads, c.page_table.shape[1]
        flat = self.indices.view(b, h, self.topk_pages).long()
        phys = flat // h
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


class ChunkedBlockTopkDecode:
    """Block top-k decode with the batch split into ``chunks`` parts on as many CUDA
    streams (fork/join around each step, so it captures into one CUDA graph), so one
    part's short, under-filled kernels (top-k, merge) overlap another part's loads.

    Each part is a :class:`FlashinferBlockTopkDecode` (``options`` go to it) over a
    view of the cache holding requests ``[a, b)``; the K/V pages are shared.

    Args:
        cache, num_q_heads, topk_pages, local_pages: as for FlashinferBlockTopkDecode.
        chunks: parts of the batch (each gets ``batch // chunks`` requests, the
            first ones one more where it does not divide).
    """

    def __init__(self, cache: PagedKVCache, num_q_heads: int, topk_pages: int,
                 local_pages: int = 1, chunks: int = 2, **options) -> None:
        import copy

        import torch

        b = cache.batch_size
        if not 1 <= chunks <= b:
            raise ValueError(f"need 1 <= chunks ({chunks}) <= batch size ({b})")
        sizes = [b // chunks + (i < b % chunks) for i in range(chunks)]
        self.bounds = []
        start = 0
        for n in sizes:
            self.bounds.append((start, start + n))
            start += n
        self.cache = cache
        self.parts = []
        for a, e in self.bounds:
            view = copy.copy(cache)
            view.batch_size = e - a
            view.page_table = cache.page_table[a:e]
            view.seq_lens = cache.seq_lens[a:e]
            view.key_means = cache.key_means[a:e]
            self.parts.append(FlashinferBlockTopkDecode(view, num_q_heads, topk_pages,
                                                        local_pages, **options))
        self.streams = [torch.cuda.Stream(device=cache.device) for _ in self.parts[1:]]

    def _run(self, what, q: torch.Tensor, out: torch.Tensor | None) -> None:
        import torch

        main = torch.cuda.current_stream()
        for s in self.streams:
            s.wait_stream(main)
        for i, (part, (a, e)) in enumerate(zip(self.parts, self.bounds, strict=True)):
            with torch.cuda.stream(main if i == 0 else self.streams[i - 1]):
                what(part, q[a:e], None if out is None else out[a:e])
        for s in self.streams:
            main.wait_stream(s)

    def select(self, q: torch.Tensor) -> None:
        """Only the selection, every part on its stream."""
        self._run(lambda part, qq, _: part.select(qq), q, None)

    def attend(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Only the attention over the pages selected last, every part on its stream."""
        self._run(lambda part, qq, oo: part.attend(qq, oo), q, out)
        return out

    def __call__(self, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Selection then attention, every part on its stream."""
        self._run(lambda part, qq, oo: part(qq, oo), q, out)
        return out

    def selected_page_mask(self) -> torch.Tensor:
        """The last selection, ``[batch, kv_heads, max_pages]`` bool (see
        :meth:`FlashinferBlockTopkDecode.selected_page_mask`)."""
        import torch

        return torch.cat([part.selected_page_mask() for part in self.parts], 0)
