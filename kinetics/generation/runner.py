"""The paged engine's model runner: a :class:`~kinetics.model.decoder.ShardedDecoderModel`
over one page pool shared by its layers.

Each layer has a :class:`~kinetics.attention.cache.PagedKVCache` of ``slots`` rows built
over the runner's one page table and length vector (``[slots, max pages]``, ``[slots]``),
so mapping a page or setting a length is done once for every layer. The runner does
what the scheduler (:mod:`kinetics.generation.scheduler`) decides:

* :meth:`ModelRunner.prefill` runs a prompt (in chunks of ``prefill_chunk`` tokens)
  through the model once and stores its keys and values in every slot that shares it;
  each chunk attends causally over the slot's cache (dense, as the ``hf`` backend
  prefills). Returns the last token's logits.
* :meth:`ModelRunner.decode` feeds one token to each of some slots and attends over
  their caches with the configuration's decode (:class:`DecodeAttention`): dense, oracle
  token top-k or block top-k. On a CUDA device (dense and block top-k) the step is
  :class:`~kinetics.generation.graphed.GraphedDecode`: Triton kernels in one CUDA graph
  per batch bucket; elsewhere, and for token top-k, the torch reference of
  :mod:`kinetics.attention.reference`.

The pool holds one page more than ``num_pages``: the spare page the graphed step's
inactive rows write to (the scheduler never hands it out). Prefill attention: the torch
reference on the CPU (float32, as the ``hf`` backend), SDPA with a causal mask on a GPU.

Logits come back as float32 over the whole vocabulary (gathered across tensor-parallel
ranks). Page mapping is the caller's: :meth:`map_pages` / :meth:`release`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from kinetics.generation.attention import DecodeAttention, reference_decode

if TYPE_CHECKING:
    import torch

    from kinetics.attention.cache import PagedKVCache
    from kinetics.model.decoder import ShardedDecoderModel


def pool_bytes(model: ShardedDecoderModel, num_pages: int, page_size: int) -> int:
    """Bytes of a pool of ``num_pages`` K and V pages of ``page_size`` tokens over every
    layer of ``model`` (the page means and tables, a few percent more, not counted)."""
    layer = model.layers[0]
    per_page = 2 * layer.local_kv_heads * page_size * layer.head_dim
    return num_pages * len(model.layers) * per_page * model.embed_tokens.element_size()


def step_impl(model: ShardedDecoderModel) -> str:
    """The decoder step implementation for ``model``: ``"fused"`` on a GPU where every
    layer is Qwen3-style, else ``"reference"``."""
    return "fused" if model.device.type == "cuda" and model.fused_supported else "reference"


def free_bytes(device: torch.device) -> int:
    """Memory the pool may take on ``device``: the GPU's free memory, or the host's
    physical memory."""
    import os

    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class ModelRunner:
    """Prefill and decode of a sharded model over a shared paged KV pool.

    Args:
        model: this rank's model shard (its device and dtype are the runner's).
        attention: the decode attention (its ``page_size`` is the pool's page size).
        slots: rows of the page table (samples decoded together, at most).
        max_tokens: tokens one slot may hold (sets the page-table width).
        num_pages: pages in the pool (shared by all slots).
        prefill_chunk: prompt tokens run through the model at once.
        impl: ``"reference"`` or ``"fused"`` (decoder step implementation; prefill
            always runs the reference layers).
        graphed: decode with :class:`~kinetics.generation.graphed.GraphedDecode`; None:
            where :func:`~kinetics.generation.graphed.graphable` (a CUDA device, dense or
            block top-k). True on the CPU needs Triton's interpreter (tests).
    """

    def __init__(self, model: ShardedDecoderModel, attention: DecodeAttention, slots: int,
                 max_tokens: int, num_pages: int, prefill_chunk: int = 512,
                 impl: str = "reference", graphed: bool | None = None) -> None:
        import torch

        from kinetics.attention.cache import PagedKVCache
        from kinetics.generation.graphed import GraphedDecode, graphable

        self.model, self.attention, self.impl = model, attention, impl
        self.slots, self.prefill_chunk = slots, max(1, prefill_chunk)
        device, layer = model.device, model.layers[0]
        page_size = attention.page_size
        max_pages = -(-max_tokens // page_size)
        self.page_table = torch.full((slots, max_pages), -1, dtype=torch.int32, device=device)
        self.seq_lens = torch.zeros(slots, dtype=torch.int64, device=device)
        self.caches = [PagedKVCache(slots, layer.local_kv_heads, layer.head_dim,
                                    page_size=page_size, max_tokens=max_tokens,
                                    dtype=model.dtype, device=device, num_pages=num_pages + 1,
                                    page_table=self.page_table, seq_lens=self.seq_lens)
                       for _ in model.layers]
        self.device = device
        self.scale = layer.head_dim ** -0.5  # as transformers' attention modules scale
        self.keeps_means = attention.method == "blocktopk"  # only block scores read them
        if graphed is None:
            graphed = graphable(attention, device, layer.head_dim)
        self.graphed = GraphedDecode(self, spare_page=num_pages) if graphed else None
        if self.graphed is not None and device.type == "cuda":
            self.graphed.record_all()  # compiled and recorded now, not in the first steps
        self.pool_bytes = pool_bytes(model, num_pages + 1, page_size)

    def close(self) -> None:
        """Drop the recorded steps and the KV pool now (the graphs refer back to this
        runner, so without this only a garbage collection frees them)."""
        if self.graphed is not None:
            self.graphed.close()
        self.graphed = None
        self.caches = []

    def synchronize(self) -> None:
        """Wait for the device's queued work (a no-op on the CPU)."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def map_pages(self, slot: int, pages: Sequence[tuple[int, int]]) -> None:
        """Map ``(logical index, page)`` pairs of ``slot`` in the shared page table."""
        for logical, page in pages:
            self.page_table[slot, logical] = page

    def release(self, slot: int) -> None:
        """Forget ``slot``'s pages and tokens (the pool's accounting is the caller's)."""
        self.page_table[slot].fill_(-1)
        self.seq_lens[slot] = 0

    def _rows(self, slots: Sequence[int]) -> torch.Tensor:
        import torch

        return torch.tensor(list(slots), dtype=torch.int64, device=self.device)

    def prefill(self, slots: Sequence[int], prompt: Sequence[int]) -> torch.Tensor:
        """Run ``prompt`` into every one of ``slots`` (empty, pages mapped); the last
        token's logits, float32 ``[vocab]``."""
        import torch

        rows = self._rows(slots)
        ids = torch.tensor(list(prompt), dtype=torch.int64, device=self.device)
        for start in range(0, len(prompt), self.prefill_chunk):
            chunk = ids[start:start + self.prefill_chunk]
            n = chunk.shape[0]
            positions = torch.arange(start, start + n, device=self.device)
            self.seq_lens[rows] = start + n
            # on a GPU, SDPA's causal mask of the chunk's queries over its keys so far
            visible = (torch.arange(start + n, device=self.device)[None, :]
                       <= positions[:, None]) if self.device.type == "cuda" else None
            attends = [partial(self._prefill_attend, cache, rows, slots[0], start, visible)
                       for cache in self.caches]
            local = self.model.local_logits(chunk, attends, positions, "reference",
                                            keep=torch.tensor([n - 1], device=self.device))
        return self.model.gather_logits(local).float()[0]

    def _prefill_attend(self, cache: PagedKVCache, rows: torch.Tensor, first_row: int,
                        start: int, visible: torch.Tensor | None, q: torch.Tensor,
                        k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """A prompt chunk's attention (its tokens at ``start ..``): store its k/v in every
        row, then every query attends causally over the first row's cache (q ``[n, Hq,
        D]``): by SDPA with the mask ``visible`` (``[n, start + n]``), or by the float32
        reference where it is None. No host synchronisation."""
        import torch.nn.functional as F

        from kinetics.attention.reference import causal_masked_attention

        n = q.shape[0]
        cache.write_prompt(rows, start, k, v, means=self.keeps_means)
        keys, values = cache.contiguous(first_row, start + n)  # [tokens so far, Hkv, D]
        q, keys, values = q.transpose(0, 1)[None], keys.transpose(0, 1)[None], \
            values.transpose(0, 1)[None]
        if visible is not None:
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible,
                                                 scale=self.scale, enable_gqa=True)
        else:
            out = causal_masked_attention(q, keys, values, None, self.scale)
        return out[0].transpose(0, 1).to(k.dtype)

    def decode(self, slots: Sequence[int], tokens: Sequence[int]) -> torch.Tensor:
        """Feed ``tokens[i]`` to slot ``slots[i]`` (its next position, page mapped);
        logits float32 ``[len(slots), vocab]``."""
        import torch

        if self.graphed is not None:
            return self.model.gather_logits(self.graphed(slots, tokens)).float()
        rows = self._rows(slots)
        ids = torch.tensor(list(tokens), dtype=torch.int64, device=self.device)
        positions = self.seq_lens[rows].clone()
        self.seq_lens[rows] = positions + 1

        attends = [partial(self._decode_attend, cache, rows, positions) for cache in self.caches]
        local = self.model.local_logits(ids, attends, positions, self.impl)
        return self.model.gather_logits(local).float()

    def _decode_attend(self, cache: PagedKVCache, rows: torch.Tensor, positions: torch.Tensor,
                       q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One token per row: store its k/v, attend over the rows' caches."""
        cache.write(rows, positions, k, v)
        view = cache.rows_view(rows)
        return reference_decode(self.attention, q, view, self.scale).to(q.dtype)
