"""A paged KV cache with a compressed-key (page mean) cache, in torch.

Layout (``HND``, the layout flashinfer calls ``HND``):

* ``k_pages``, ``v_pages``: ``[num_pages, num_kv_heads, page_size, head_dim]``;
* ``key_means``: ``[batch, num_kv_heads, max_pages_per_request, head_dim]``, the
  compressed keys: entry ``[r, h, j]`` is the mean of the keys (valid slots only) of
  request ``r``'s logical page ``j``, KV head ``h``, updated on every append. It is
  laid out by request and logical page, not by physical page, so that scoring a
  request's pages streams one contiguous block (no page-table indirection);
* ``page_table``: ``[batch, max_pages_per_request]`` int32 physical page ids,
  logical page ``j`` of request ``r`` lives in ``page_table[r, j]``; pages may be
  anywhere in the pool and in any order;
* ``seq_lens``: ``[batch]`` int64 tokens held per request; the last page of a
  request is partial unless its length is a multiple of the page size.

The head-major layout lets each (request, KV head) pair be addressed as its own
one-head request: physical page ``p`` of head ``h`` is row ``p * num_kv_heads + h``
of ``k_pages.view(-1, 1, page_size, head_dim)`` (see :meth:`flat_page_ids`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kinetics.errors import InputError

if TYPE_CHECKING:  # torch stays an optional dependency of the package
    import torch


PAGE_MEANS_DTYPES = ("bf16", "fp8", "fp32")  # names of the page-mean dtypes (CLI, bench)
FP8_MAX = 448.0  # largest finite float8 e4m3fn


def page_means_dtype(name: str) -> torch.dtype:
    """The torch dtype of a page-mean dtype name (``"bf16"``, ``"fp8"``: e4m3fn,
    ``"fp32"``); InputError on another name."""
    import torch

    dtypes = {"bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn, "fp32": torch.float32}
    if name not in dtypes:
        raise InputError(f"page-means dtype must be one of {', '.join(PAGE_MEANS_DTYPES)}, "
                         f"got {name!r}")
    return dtypes[name]


def round_page_means(means: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float ``means`` stored as ``dtype``: float8 e4m3fn saturates at +-FP8_MAX (a plain
    cast would give NaN), other dtypes cast as torch does."""
    import torch

    if dtype == torch.float8_e4m3fn:
        means = means.clamp(-FP8_MAX, FP8_MAX)
    return means.to(dtype)


def _check_page_size(page_size: int) -> None:
    if page_size < 1 or page_size & (page_size - 1):
        raise InputError(f"page size must be a power of two (tokens), got {page_size}")


class PagedKVCache:
    """Paged K/V storage for a batch of decode requests (one token appended per step).

    Args:
        batch_size: requests.
        num_kv_heads, head_dim: KV heads and their width (elements).
        page_size: tokens per page, a power of two (16 by default).
        max_tokens: capacity per request, tokens (sets the page-table width).
        dtype, device: storage of K and V (and of the page means by default).
        page_means_dtype: storage of the page means (default ``dtype``).
        num_pages: pages in the pool (default: exactly enough for every request).
        page_order: ``"sequential"`` hands out pages in pool order, ``"random"`` in
            a random permutation (non-contiguous page tables), drawn from ``seed``.
        seed: seed of the random page order.
        page_table, seq_lens: a page table ``[batch, max pages]`` (int32) and lengths
            ``[batch]`` (int64) owned by the caller, who maps pages and sets lengths (an
            engine shares one page table among its layers' caches); the cache then
            hands out no pages (``append``/``extend`` refuse: use :meth:`write`) and the
            pool may be smaller than ``batch x max pages``.
    """

    def __init__(self, batch_size: int, num_kv_heads: int, head_dim: int, *,
                 page_size: int = 16, max_tokens: int, dtype: torch.dtype | None = None,
                 device: str | torch.device = "cpu", num_pages: int | None = None,
                 page_order: str = "sequential", seed: int = 0,
                 page_means_dtype: torch.dtype | None = None,
                 page_table: torch.Tensor | None = None,
                 seq_lens: torch.Tensor | None = None) -> None:
        import torch

        _check_page_size(page_size)
        if batch_size < 1 or num_kv_heads < 1 or head_dim < 1 or max_tokens < 1:
            raise InputError("batch size, KV heads, head dim and max tokens must be >= 1")
        self.batch_size, self.num_kv_heads, self.head_dim = batch_size, num_kv_heads, head_dim
        self.page_size = page_size
        self.max_pages_per_request = -(-max_tokens // page_size)
        needed = batch_size * self.max_pages_per_request
        self.num_pages = needed if num_pages is None else num_pages
        shared = page_table is not None
        if shared != (seq_lens is not None):
            raise ValueError("give both page_table and seq_lens, or neither")
        if self.num_pages < needed and not shared:
            raise InputError(f"pool of {self.num_pages} pages is smaller than the {needed} "
                             "pages the batch may need")
        dtype = dtype or torch.float32
        self.dtype, self.device = dtype, torch.device(device)
        shape = (self.num_pages, num_kv_heads, page_size, head_dim)
        self.k_pages = torch.zeros(shape, dtype=dtype, device=self.device)
        self.v_pages = torch.zeros(shape, dtype=dtype, device=self.device)
        self.key_means = torch.zeros((batch_size, num_kv_heads, self.max_pages_per_request,
                                      head_dim), dtype=page_means_dtype or dtype,
                                     device=self.device)
        if shared:  # the owner maps pages and sets lengths; this cache stores and reads
            if tuple(page_table.shape) != (batch_size, self.max_pages_per_request) or \
                    tuple(seq_lens.shape) != (batch_size,):
                raise ValueError("page_table must be [batch, max_pages], seq_lens [batch]")
            self.page_table, self.seq_lens, self._free = page_table, seq_lens, []
            return
        self.page_table = torch.full((batch_size, self.max_pages_per_request), -1,
                                     dtype=torch.int32, device=self.device)
        self.seq_lens = torch.zeros(batch_size, dtype=torch.int64, device=self.device)
        if page_order == "random":
            gen = torch.Generator().manual_seed(seed)
            order = torch.randperm(self.num_pages, generator=gen)
        elif page_order == "sequential":
            order = torch.arange(self.num_pages)
        else:
            raise InputError(f"page_order must be 'sequential' or 'random', got {page_order!r}")
        self._free = order.tolist()[::-1]  # pop() hands out order[0] first

    # ---------------------------------------------------------------- building
    @classmethod
    def from_dense(cls, keys: torch.Tensor, values: torch.Tensor, *, page_size: int = 16,
                   seq_lens: list[int] | None = None, dtype: torch.dtype | None = None,
                   device: str | torch.device | None = None, page_order: str = "sequential",
                   seed: int = 0, num_pages: int | None = None,
                   page_means_dtype: torch.dtype | None = None) -> PagedKVCache:
        """Build a cache holding contiguous ``keys``/``values`` ``[batch, tokens, kv_heads, dim]``.

        ``seq_lens`` (tokens per request, default all ``tokens``) makes a ragged batch:
        request ``r`` holds ``keys[r, :seq_lens[r]]``.
        """
        import torch

        if keys.shape != values.shape or keys.dim() != 4:
            raise InputError("keys and values must both be [batch, tokens, kv_heads, head_dim]")
        batch, tokens, heads, dim = keys.shape
        lens = [tokens] * batch if seq_lens is None else list(seq_lens)
        if len(lens) != batch or any(n < 0 or n > tokens for n in lens):
            raise InputError(f"seq_lens must give 0..{tokens} tokens for each of {batch} requests")
        cache = cls(batch, heads, dim, page_size=page_size, max_tokens=max(tokens, 1),
                    dtype=dtype or keys.dtype, device=device or keys.device,
                    page_order=page_order, seed=seed, num_pages=num_pages,
                    page_means_dtype=page_means_dtype)
        ps = page_size
        for r, n in enumerate(lens):
            pages = -(-n // ps)
            ids = torch.tensor([cache._free.pop() for _ in range(pages)], dtype=torch.int64)
            cache.page_table[r, :pages] = ids.to(torch.int32).to(cache.device)
            padded = pages * ps
            for src, dst in ((keys, cache.k_pages), (values, cache.v_pages)):
                block = torch.zeros((padded, heads, dim), dtype=cache.dtype, device=cache.device)
                block[:n] = src[r, :n].to(device=cache.device, dtype=cache.dtype)
                # [pages*ps, H, D] -> [pages, H, ps, D]
                dst[ids.to(cache.device)] = block.view(pages, ps, heads, dim).transpose(1, 2)
            cache.seq_lens[r] = n
        cache.recompute_means()
        return cache

    @classmethod
    def random(cls, batch_size: int, num_kv_heads: int, head_dim: int, context: int, *,
               page_size: int = 16, dtype: torch.dtype | None = None,
               device: str | torch.device = "cpu", seed: int = 0,
               generator: torch.Generator | None = None,
               page_means_dtype: torch.dtype | None = None) -> PagedKVCache:
        """A cache of ``context`` tokens per request filled with standard-normal K and V,
        pages in a random order (fast: no per-token work; used by the benchmark)."""
        import torch

        cache = cls(batch_size, num_kv_heads, head_dim, page_size=page_size,
                    max_tokens=context, dtype=dtype, device=device,
                    page_means_dtype=page_means_dtype)
        gen = generator or torch.Generator(device=cache.device).manual_seed(seed)
        cache.k_pages.normal_(generator=gen)
        cache.v_pages.normal_(generator=gen)
        order = torch.randperm(cache.num_pages, generator=torch.Generator().manual_seed(seed))
        cache.page_table.copy_(order.view(batch_size, -1).to(torch.int32))
        cache._free = []
        cache.seq_lens.fill_(context)
        cache.recompute_means()
        return cache

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append one token per request: ``k``, ``v`` are ``[batch, kv_heads, head_dim]``.

        Takes a fresh page from the pool where a request's last page is full, and
        updates the page mean (the compressed key) of every page written.
        """
        import torch

        expected = (self.batch_size, self.num_kv_heads, self.head_dim)
        if tuple(k.shape) != expected or tuple(v.shape) != expected:
            raise InputError(f"append takes k and v of shape {list(expected)}")
        lens = self.seq_lens.tolist()
        slots = []
        for r, n in enumerate(lens):
            page_idx, slot = divmod(n, self.page_size)
            if page_idx >= self.max_pages_per_request:
                raise InputError(f"request {r} is full ({n} tokens)")
            if slot == 0:
                if not self._free:
                    raise InputError("the page pool is exhausted")
                self.page_table[r, page_idx] = self._free.pop()
            slots.append(slot)
        rows = torch.arange(self.batch_size, device=self.device)
        page_idx = self.seq_lens // self.page_size
        phys = self.page_table[rows, page_idx].long()
        slot_t = torch.tensor(slots, dtype=torch.int64, device=self.device)
        # advanced indices on dims 0 and 2 around a slice: result [batch, H, D]
        self.k_pages[phys, :, slot_t] = k.to(self.dtype)
        self.v_pages[phys, :, slot_t] = v.to(self.dtype)
        self.seq_lens += 1
        self._refresh_means(rows.cpu())

    def extend(self, request: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append ``T`` tokens to one request: ``k``, ``v`` are ``[T, kv_heads, head_dim]``
        (a prefill). Takes pages from the pool as needed and updates the page mean of
        every page written."""
        import torch

        expected = (self.num_kv_heads, self.head_dim)
        if k.dim() != 3 or tuple(k.shape[1:]) != expected or k.shape != v.shape:
            raise InputError(f"extend takes k and v of shape [tokens, {expected[0]}, "
                             f"{expected[1]}]")
        if not 0 <= request < self.batch_size:
            raise InputError(f"request {request} is not in 0..{self.batch_size - 1}")
        n, t, ps = int(self.seq_lens[request]), k.shape[0], self.page_size
        if t == 0:
            return
        if n + t > self.max_pages_per_request * ps:
            raise InputError(f"request {request} cannot hold {n + t} tokens")
        first_new_page, last_page = -(-n // ps), (n + t - 1) // ps
        if last_page - first_new_page + 1 > len(self._free):
            raise InputError("the page pool is exhausted")
        for page in range(first_new_page, last_page + 1):
            self.page_table[request, page] = self._free.pop()
        pos = torch.arange(n, n + t, device=self.device)
        phys = self.page_table[request, pos // ps].long()
        slot = pos % ps
        self.k_pages[phys, :, slot] = k.to(device=self.device, dtype=self.dtype)
        self.v_pages[phys, :, slot] = v.to(device=self.device, dtype=self.dtype)
        self.seq_lens[request] = n + t
        pages = torch.arange(n // ps, last_page + 1, device=self.device)
        counts = (torch.clamp(n + t - pages * ps, max=ps)).to(torch.float32)
        req = torch.full_like(pages, request)
        self._page_means(req, pages, counts)

    def write(self, rows: torch.Tensor, positions: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> None:
        """Store tokens at ``(rows[i], positions[i])`` (``[n]`` int64 each; ``k``, ``v``
        ``[n, kv_heads, head_dim]``) in pages already mapped in ``page_table``, and refresh
        the page mean of every page written, counting the slots up to the largest
        position written in it (the earlier slots of those pages must hold tokens).
        For a cache built over a shared ``page_table`` whose owner maps the pages;
        ``seq_lens`` is left to the owner."""
        import torch

        ps = self.page_size
        page = positions // ps
        phys = self.page_table[rows, page].long()
        if bool((phys < 0).any()):
            raise InputError("write to a page that is not mapped")
        slot = positions % ps
        self.k_pages[phys, :, slot] = k.to(self.dtype)
        self.v_pages[phys, :, slot] = v.to(self.dtype)
        key = rows * self.max_pages_per_request + page
        pages, inverse = torch.unique(key, return_inverse=True)
        last = torch.zeros_like(pages).scatter_reduce(0, inverse, positions, "amax",
                                                      include_self=False)
        req, logical = pages // self.max_pages_per_request, pages % self.max_pages_per_request
        self._page_means(req, logical, (last + 1 - logical * ps).to(torch.float32))

    def write_prompt(self, rows: torch.Tensor, start: int, k: torch.Tensor, v: torch.Tensor,
                     means: bool = True) -> None:
        """Store the same ``n`` tokens (``k``, ``v`` ``[n, kv_heads, head_dim]``) at positions
        ``start .. start + n - 1`` of every one of ``rows`` (``[r]`` int64), in pages
        already mapped, and with ``means`` refresh the page mean of every page written
        (its earlier slots must hold tokens; without, the means go stale: a dense decode
        never reads them). Equal to :meth:`write` of those tokens, without a host
        synchronisation (the positions are known on the host) and without its check that
        the pages are mapped: an unmapped entry (-1) indexes the pool's last page."""
        import torch

        ps, n, r = self.page_size, k.shape[0], rows.shape[0]
        positions = torch.arange(start, start + n, device=self.device)
        phys = self.page_table[rows][:, positions // ps].long()  # [r, n]
        slot = (positions % ps).expand(r, n)
        self.k_pages[phys, :, slot] = k.to(self.dtype).expand(r, *k.shape)
        self.v_pages[phys, :, slot] = v.to(self.dtype).expand(r, *v.shape)
        if not means:
            return
        first, last = start // ps, (start + n - 1) // ps
        pages = torch.arange(first, last + 1, device=self.device)
        counts = torch.clamp(start + n - pages * ps, max=ps).to(torch.float32)
        self._page_means(rows.repeat_interleave(pages.shape[0]), pages.repeat(r),
                         counts.repeat(r))

    def prefix_view(self, n: int, seq_lens: torch.Tensor | None = None,
                    page_table: torch.Tensor | None = None) -> PagedKVCache:
        """A cache of the first ``n`` requests sharing this one's storage: its K/V pages,
        and views (not copies) of its page table, lengths and page means; ``seq_lens``
        (``[n]``) and ``page_table`` (``[n, max pages]``) replace the lengths and table the
        view reads (default this cache's). Writes through it reach this cache's pages."""
        import copy

        view = copy.copy(self)
        view.batch_size = n
        view.key_means, view._free = self.key_means[:n], []
        view.page_table = self.page_table[:n] if page_table is None else page_table
        view.seq_lens = self.seq_lens[:n] if seq_lens is None else seq_lens
        return view

    def write_step(self, positions: torch.Tensor, active: torch.Tensor, spare_page: int,
                   k: torch.Tensor, v: torch.Tensor, means: bool = True) -> None:
        """Store one token per request: request ``i``'s ``k[i]``, ``v[i]`` (``[batch,
        kv_heads, head_dim]``) at ``positions[i]`` where ``active[i]`` (bool ``[batch]``),
        in physical page ``spare_page`` (a page no request owns, scratch) elsewhere; with
        ``means``, the page mean of each active request's written page counts the slots
        up to its position (inactive requests' means untouched; without ``means`` they go
        stale). No host synchronisation and fixed shapes, so a CUDA graph can record it;
        the active requests' pages must be mapped (not checked: an unmapped entry, -1,
        indexes the pool's last page)."""
        import torch

        ps = self.page_size
        logical = (positions // ps).to(torch.int64)
        mapped = self.page_table.gather(1, logical[:, None]).squeeze(1).to(torch.int64)
        phys = torch.where(active, mapped, spare_page)
        slot = positions % ps
        self.k_pages[phys, :, slot] = k.to(self.dtype)
        self.v_pages[phys, :, slot] = v.to(self.dtype)
        if not means:
            return
        fresh = self._means_of(phys, (slot + 1).to(torch.float32))
        rows = torch.arange(self.batch_size, device=self.device)
        old = self.key_means[rows, :, logical]
        self.key_means[rows, :, logical] = torch.where(active[:, None, None], fresh, old)

    def rows_view(self, rows: torch.Tensor) -> PagedKVCache:
        """A cache of requests ``rows`` only (``[n]`` int64): the same K/V pages (shared),
        copies of those rows' page table, lengths and page means. For reading (a decode
        step over some of the requests); writes go to this cache."""
        import copy

        view = copy.copy(self)
        view.batch_size = int(rows.shape[0])
        view.page_table, view.seq_lens = self.page_table[rows], self.seq_lens[rows]
        view.key_means, view._free = self.key_means[rows], []
        return view

    # ---------------------------------------------------------------- reading
    def _means_of(self, phys: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The mean of the first ``counts`` keys of each physical page ``phys`` (float32
        sums, stored rounding): ``[P, kv_heads, head_dim]``."""
        import torch

        slots = torch.arange(self.page_size, device=self.device)
        valid = (slots[None, :] < counts[:, None]).to(torch.float32)  # [P, ps]
        sums = torch.einsum("phsd,ps->phd", self.k_pages[phys].to(torch.float32), valid)
        return round_page_means(sums / counts.clamp(min=1)[:, None, None], self.key_means.dtype)

    def _page_means(self, req: torch.Tensor, page: torch.Tensor, counts: torch.Tensor
                    ) -> None:
        """Set ``key_means[req, :, page]`` to the float32 mean of the first ``counts`` keys
        of those logical pages (``req``, ``page``, ``counts``: equal-length 1-D tensors)."""
        phys = self.page_table[req, page].long()
        self.key_means[req, :, page] = self._means_of(phys, counts)

    def _refresh_means(self, requests: torch.Tensor) -> None:
        """Recompute the page mean of the last page of each of ``requests``."""
        import torch

        r = requests.to(self.device)
        n = self.seq_lens[r]
        keep = n > 0
        r, n = r[keep], n[keep]
        last = (n - 1) // self.page_size
        self._page_means(r, last, (n - last * self.page_size).to(torch.float32))

    def recompute_means(self) -> None:
        """Recompute every used page's mean key from the pages (one request at a time)."""
        import torch

        for r in range(self.batch_size):
            n = int(self.seq_lens[r])
            if n == 0:
                continue
            pages = -(-n // self.page_size)
            counts = torch.full((pages,), self.page_size, dtype=torch.float32,
                                device=self.device)
            counts[-1] = n - (pages - 1) * self.page_size
            req = torch.full((pages,), r, dtype=torch.int64, device=self.device)
            self._page_means(req, torch.arange(pages, device=self.device), counts)

    def num_request_pages(self) -> torch.Tensor:
        """Pages held per request, ``[batch]`` int64."""
        return (self.seq_lens + self.page_size - 1) // self.page_size

    def last_page_len(self) -> torch.Tensor:
        """Tokens in each request's last page, ``[batch]`` int64 (0 for an empty request)."""
        n = self.seq_lens
        return ((n - 1) % self.page_size + 1) * (n > 0)

    def with_page_means_dtype(self, dtype: torch.dtype) -> PagedKVCache:
        """A cache sharing this one's K/V pages, page table and lengths (not copied) whose
        page means are recomputed from the pages and stored as ``dtype``: for reading
        (benchmarks, checks); appending to either leaves the other's view stale."""
        import copy

        import torch

        other = copy.copy(self)
        other.key_means = torch.zeros_like(self.key_means, dtype=dtype)
        other._free = list(self._free)
        other.recompute_means()
        return other

    def contiguous(self, request: int, length: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Request ``request``'s keys and values, ``[tokens, kv_heads, head_dim]`` each
        (its first ``length`` tokens; default all: its length is read from the device)."""
        n = int(self.seq_lens[request]) if length is None else length
        pages = -(-n // self.page_size)
        phys = self.page_table[request, :pages].long()
        out = []
        for store in (self.k_pages, self.v_pages):
            block = store[phys].transpose(1, 2).reshape(pages * self.page_size,
                                                        self.num_kv_heads, self.head_dim)
            out.append(block[:n])
        return out[0], out[1]

    def padded(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All requests as padded tensors: keys, values ``[batch, kv_heads, T, head_dim]``
        (``T`` = pages x page size of the longest request) and a ``[batch, T]`` bool mask of
        the valid tokens. Gathers through the page table (any page order)."""
        import torch

        pages = max(int(self.num_request_pages().max()), 1)
        table = self.page_table[:, :pages].long().clamp(min=0)  # [B, P]
        t = pages * self.page_size
        out = []
        for store in (self.k_pages, self.v_pages):
            g = store[table]  # [B, P, H, ps, D]
            out.append(g.permute(0, 2, 1, 3, 4).reshape(self.batch_size, self.num_kv_heads, t,
                                                        self.head_dim))
        pos = torch.arange(t, device=self.device)
        mask = pos[None, :] < self.seq_lens[:, None]
        return out[0], out[1], mask

    def flat_page_ids(self, pages: torch.Tensor, head: torch.Tensor | int) -> torch.Tensor:
        """Row ids in ``k_pages.view(-1, 1, page_size, head_dim)`` of physical ``pages`` for
        KV head ``head`` (``page * num_kv_heads + head``)."""
        return pages * self.num_kv_heads + head

    @property
    def bytes_per_token(self) -> int:
        """K plus V bytes one token occupies per KV head set (all heads of one layer)."""
        return 2 * self.num_kv_heads * self.head_dim * self.k_pages.element_size()
