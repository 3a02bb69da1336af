"""The decode attention a generation runs: a cost-model configuration mapped to the
reference decode (:mod:`kinetics.attention.reference`) over a paged cache. Shared by the
``hf`` backend and the paged engine's runner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinetics.cost import AttentionConfig
from kinetics.errors import InputError

if TYPE_CHECKING:
    import torch

    from kinetics.attention.cache import PagedKVCache

DENSE_PAGE_SIZE = 16


@dataclass(frozen=True)
class DecodeAttention:
    """The reference decode call one :class:`AttentionConfig` maps to.

    Attributes:
        method: ``dense``, ``topk`` or ``blocktopk``.
        page_size: cache page size, tokens (the block size for block top-k).
        topk_tokens: token top-k budget (``topk`` only).
        topk_pages: pages attended per step, local ones included (``blocktopk`` only).
        local_pages: trailing pages always attended, >= 1 (``blocktopk`` only).
    """

    method: str
    page_size: int = DENSE_PAGE_SIZE
    topk_tokens: int = 0
    topk_pages: int = 0
    local_pages: int = 1


def decode_attention(config: AttentionConfig) -> DecodeAttention:
    """Map a cost-model configuration to the reference decode that realises it.

    Block top-k with a local window of ``W`` tokens and budget ``B``: ``W`` must be a
    whole number of blocks; the last ``max(1, W / b)`` pages are always attended (the
    current, partial page is always among them, so with ``W = 0`` it counts among the
    ``B / b`` pages) and ``B / b`` pages are attended in all.
    """
    if config.method == "dense":
        return DecodeAttention("dense")
    if config.method == "topk":
        return DecodeAttention("topk", topk_tokens=int(config.budget))
    b = int(config.block_size)
    if b & (b - 1):
        raise InputError(f"block size must be a power of two (tokens), got {b}")
    if config.local % b:
        raise InputError(f"the local window ({config.local} tokens) must be a whole number "
                         f"of {b}-token blocks")
    return DecodeAttention("blocktopk", page_size=b, topk_pages=int(config.budget) // b,
                           local_pages=max(1, config.local // b))


def reference_decode(attention: DecodeAttention, q: torch.Tensor, cache: PagedKVCache,
                     scale: float | None) -> torch.Tensor:
    """The configuration's decode attention of one token per request by the torch
    reference (float32 ``[batch, q_heads, head_dim]``; ``scale`` None: 1/sqrt(head_dim))."""
    from kinetics.attention import reference

    if attention.method == "topk":
        return reference.topk_decode(q, cache, attention.topk_tokens, scale)
    if attention.method == "blocktopk":
        return reference.blocktopk_decode(q, cache, attention.topk_pages, attention.local_pages,
                                          scale)
    return reference.dense_decode(q, cache, scale)
