"""Sparse decode attention over a paged KV cache.

* :mod:`kinetics.attention.cache`: :class:`PagedKVCache` (pages of ``page_size``
  tokens, page table per request, page-mean compressed keys updated on append).
* :mod:`kinetics.attention.reference`: torch reference (CPU or GPU, float32 math) of
  dense, oracle token top-k and block top-k decode; the tests' ground truth.
* :mod:`kinetics.attention.select`: the Triton block top-k page selection.
* :mod:`kinetics.attention.decode`: dense (flashinfer) and block top-k (Triton) GPU decode.

Only the cache and the reference are imported here; the GPU modules import triton
and flashinfer lazily. See docs/attention.md.
"""

from kinetics.attention.cache import PagedKVCache
from kinetics.attention.reference import (
    blocktopk_decode,
    dense_decode,
    masked_decode,
    page_scores,
    select_pages,
    topk_decode,
    topk_token_mask,
)

__all__ = [
    "PagedKVCache",
    "blocktopk_decode",
    "dense_decode",
    "masked_decode",
    "page_scores",
    "select_pages",
    "topk_decode",
    "topk_token_mask",
]
