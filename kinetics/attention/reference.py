"""Torch reference decode attention over a :class:`PagedKVCache` (CPU or GPU, any dtype).

Everything is computed in float32 (logits, softmax, weighted sum) from the cache's
stored values, and returned as float32 ``[batch, num_q_heads, head_dim]``. These
are the ground truth the tests and the in-run benchmark checks compare against.

GQA: query head ``j`` reads KV head ``j // group`` with ``group = num_q_heads //
num_kv_heads``. Sparse methods select per (request, KV head), shared by the query
heads of the group, so each KV head loads the same number of tokens:

* token top-k (oracle): the ``k`` tokens with the largest *sum over the group's query
  heads* of the true logits ``q . k``;
* block top-k: page ``p`` scores ``sum_g q_g . kbar_p`` (the sum over the group's
  query heads; equal to ``(sum_g q_g) . kbar_p``), ``kbar_p`` the page's mean key
  from the compressed-key cache. The last ``local_pages`` pages of the request (the
  last, partial page always among them) are always attended; the other
  ``topk_pages - local_pages`` are the best-scoring remaining pages. ``topk_pages``
  counts all attended pages, so the token budget is ``topk_pages * page_size``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from kinetics.errors import InputError

if TYPE_CHECKING:
    import torch

    from kinetics.attention.cache import PagedKVCache


def _check_q(q: torch.Tensor, cache: PagedKVCache) -> int:
    if q.dim() != 3 or q.shape[0] != cache.batch_size or q.shape[2] != cache.head_dim:
        raise InputError(f"q must be [batch={cache.batch_size}, q_heads, "
                         f"head_dim={cache.head_dim}], got {list(q.shape)}")
    if q.shape[1] % cache.num_kv_heads:
        raise InputError(f"{q.shape[1]} query heads do not divide into "
                         f"{cache.num_kv_heads} KV heads")
    return q.shape[1] // cache.num_kv_heads


def _logits(q: torch.Tensor, keys: torch.Tensor, group: int) -> torch.Tensor:
    """float32 logits ``[B, Hkv, G, T]`` of q ``[B, Hq, D]`` against keys ``[B, Hkv, T, D]``."""
    import torch

    b, hq, d = q.shape
    qg = q.to(torch.float32).view(b, hq // group, group, d)
    return torch.einsum("bhgd,bhtd->bhgt", qg, keys.to(torch.float32))


def masked_decode(q: torch.Tensor, cache: PagedKVCache, token_mask: torch.Tensor | None = None,
                  sm_scale: float | None = None) -> torch.Tensor:
    """Attention of one query token per request over the tokens in ``token_mask``.

    Args:
        q: ``[batch, num_q_heads, head_dim]``.
        cache: the paged KV cache.
        token_mask: bool ``[batch, num_kv_heads, T]`` over the padded token positions of
            :meth:`PagedKVCache.padded` (``None``: every valid token, i.e. dense).
        sm_scale: logit scale (default ``1/sqrt(head_dim)``).

    Returns:
        float32 ``[batch, num_q_heads, head_dim]``.
    """
    import torch

    group = _check_q(q, cache)
    keys, values, valid = cache.padded()
    mask = valid[:, None, :].expand(-1, cache.num_kv_heads, -1)
    if token_mask is not None:
        mask = mask & token_mask
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(cache.head_dim)
    logits = _logits(q, keys, group) * scale  # [B, Hkv, G, T]
    logits = logits.masked_fill(~mask[:, :, None, :], float("-inf"))
    probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # empty selection -> zeros
    out = torch.einsum("bhgt,bhtd->bhgd", probs, values.to(torch.float32))
    return out.reshape(q.shape[0], q.shape[1], cache.head_dim)


def dense_decode(q: torch.Tensor, cache: PagedKVCache, sm_scale: float | None = None
                 ) -> torch.Tensor:
    """Dense decode attention over every cached token (float32 out)."""
    return masked_decode(q, cache, None, sm_scale)


def topk_token_mask(q: torch.Tensor, cache: PagedKVCache, k: int) -> torch.Tensor:
    """Oracle token top-k selection, bool ``[batch, num_kv_heads, T]`` (``k`` tokens, or
    all of a request's tokens if it holds fewer), by the group-summed true logits."""
    import torch

    if k < 1:
        raise InputError(f"token top-k needs k >= 1 tokens, got {k}")
    group = _check_q(q, cache)
    keys, _, valid = cache.padded()
    scores = _logits(q, keys, group).sum(dim=2)  # [B, Hkv, T]
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
    kk = min(k, scores.shape[-1])
    idx = scores.topk(kk, dim=-1).indices
    mask = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, True)
    return mask & valid[:, None, :]


def topk_decode(q: torch.Tensor, cache: PagedKVCache, k: int, sm_scale: float | None = None
                ) -> torch.Tensor:
    """Oracle token top-k decode: attend the ``k`` best tokens per (request, KV head)."""
    return masked_decode(q, cache, topk_token_mask(q, cache, k), sm_scale)


def page_scores(q: torch.Tensor, cache: PagedKVCache) -> torch.Tensor:
    """Block scores, float32 ``[batch, num_kv_heads, max_pages]``: ``(sum_g q_g) . kbar_p``
    for the request's pages, ``-inf`` past its last page."""
    import torch

    group = _check_q(q, cache)
    b = cache.batch_size
    pages = max(int(cache.num_request_pages().max()), 1)
    means = cache.key_means[:, :, :pages].to(torch.float32)  # [B, Hkv, P, D]
    qsum = q.to(torch.float32).view(b, cache.num_kv_heads, group, -1).sum(dim=2)
    scores = torch.einsum("bhd,bhpd->bhp", qsum, means)
    used = torch.arange(pages, device=q.device)[None, :] < cache.num_request_pages()[:, None]
    return scores.masked_fill(~used[:, None, :], float("-inf"))


def _check_pages(topk_pages: int, local_pages: int) -> None:
    if local_pages < 1 or topk_pages < local_pages:
        raise InputError(f"block top-k needs 1 <= local pages ({local_pages}) <= top-k pages "
                         f"({topk_pages})")


def _add_top_pages(mask: torch.Tensor, candidates: torch.Tensor, m: int) -> torch.Tensor:
    """``mask`` (bool, in place) plus the ``m`` best ``candidates`` along the last axis;
    a -inf candidate (past the end, or local) never counts as chosen."""
    import torch

    if m > 0:
        idx = candidates.topk(m, dim=-1).indices
        mask |= torch.zeros_like(mask).scatter_(-1, idx, True) & torch.isfinite(candidates)
    return mask


def select_pages(q: torch.Tensor, cache: PagedKVCache, topk_pages: int, local_pages: int = 1
                 ) -> torch.Tensor:
    """Block top-k page selection, bool ``[batch, num_kv_heads, max_pages]`` over logical
    page positions: the last ``local_pages`` pages plus the ``topk_pages - local_pages``
    best-scoring other pages (all pages when a request holds ``topk_pages`` or fewer).
    Ties are broken by ``torch.topk``."""
    import torch

    _check_pages(topk_pages, local_pages)
    scores = page_scores(q, cache)  # [B, H, P]
    b, h, p = scores.shape
    n = cache.num_request_pages()  # [B]
    pos = torch.arange(p, device=q.device)
    local = (pos[None, :] >= (n[:, None] - local_pages)) & (pos[None, :] < n[:, None])
    candidates = scores.masked_fill(local[:, None, :], float("-inf"))
    mask = local[:, None, :].expand(b, h, p).clone()
    return _add_top_pages(mask, candidates, min(topk_pages - local_pages, p))


def page_mask_to_tokens(page_mask: torch.Tensor, page_size: int) -> torch.Tensor:
    """Expand a ``[B, H, P]`` page mask to the ``[B, H, P * page_size]`` token mask."""
    return page_mask.repeat_interleave(page_size, dim=-1)


def blocktopk_decode(q: torch.Tensor, cache: PagedKVCache, topk_pages: int,
                     local_pages: int = 1, sm_scale: float | None = None,
                     page_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Block top-k decode (float32 out); pass ``page_mask`` to attend a given selection."""
    if page_mask is None:
        page_mask = select_pages(q, cache, topk_pages, local_pages)
    return masked_decode(q, cache, page_mask_to_tokens(page_mask, cache.page_size), sm_scale)


# ------------------------------------------------------------ teacher-forced (causal) form
# The same selections for every query of a sequence at once, as one teacher-forced pass
# computes them: q ``[batch, num_q_heads, Tq, head_dim]``, keys/values ``[batch,
# num_kv_heads, Tk, head_dim]`` (Tq <= Tk); query ``i`` sits at position ``Tk - Tq + i``
# and sees keys ``0..`` its position, exactly the cache a decode step there would hold.
# Masks are bool ``[batch, num_kv_heads, Tq, Tk]``. tests/attention/test_reference.py
# checks each against the decode form above, query by query.

def causal_visibility(tq: int, tk: int, device: torch.device) -> torch.Tensor:
    """bool ``[Tq, Tk]``: key ``s`` visible to query ``i`` (position ``Tk - Tq + i``)."""
    import torch

    pos = torch.arange(tq, device=device) + (tk - tq)
    return torch.arange(tk, device=device)[None, :] <= pos[:, None]


def _check_qk(q: torch.Tensor, k: torch.Tensor) -> int:
    if (q.dim() != 4 or k.dim() != 4 or q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]
            or q.shape[2] > k.shape[2] or q.shape[1] % k.shape[1]):
        raise InputError(f"q [batch, q_heads, Tq, dim] and keys [batch, kv_heads, Tk>=Tq, dim] "
                         f"do not fit: {list(q.shape)} vs {list(k.shape)}")
    return q.shape[1] // k.shape[1]


def _causal_logits(q: torch.Tensor, k: torch.Tensor, group: int) -> torch.Tensor:
    """float32 logits ``[B, Hkv, G, Tq, Tk]`` (query head ``j`` reads KV head ``j // G``)."""
    import torch

    b, hq, tq, d = q.shape
    qg = q.to(torch.float32).view(b, hq // group, group, tq, d)
    return torch.einsum("bhgqd,bhkd->bhgqk", qg, k.to(torch.float32))


def causal_topk_mask(q: torch.Tensor, k: torch.Tensor, k_tokens: int) -> torch.Tensor:
    """Oracle token top-k of every query (as :func:`topk_token_mask` at its position)."""
    import torch

    if k_tokens < 1:
        raise InputError(f"token top-k needs k >= 1 tokens, got {k_tokens}")
    group = _check_qk(q, k)
    causal = causal_visibility(q.shape[2], k.shape[2], q.device)
    scores = _causal_logits(q, k, group).sum(dim=2).masked_fill(~causal, float("-inf"))
    idx = scores.topk(min(k_tokens, k.shape[2]), dim=-1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, True) & causal


def causal_block_mask(q: torch.Tensor, k: torch.Tensor, page_size: int, topk_pages: int,
                      local_pages: int = 1, means_dtype: torch.dtype | None = None
                      ) -> torch.Tensor:
    """Block top-k of every query (as :func:`select_pages` + :func:`page_mask_to_tokens`
    on a cache of ``page_size``-token pages holding its prefix, its page means stored as
    ``means_dtype``: ``None`` keeps them float32), as a token mask."""
    import torch

    from kinetics.attention.cache import round_page_means

    _check_pages(topk_pages, local_pages)
    if page_size < 1 or page_size & (page_size - 1):
        raise InputError(f"page size must be a power of two (tokens), got {page_size}")
    group = _check_qk(q, k)
    b, hkv, tk, d = k.shape
    tq, pages = q.shape[2], -(-tk // page_size)
    padded = torch.zeros((b, hkv, pages * page_size, d), dtype=torch.float32, device=k.device)
    padded[:, :, :tk] = k.to(torch.float32)
    # Only full pages are ever candidates (the last, partial page is always local), so
    # the plain mean of each page's keys is the compressed key the cache would hold.
    means = padded.view(b, hkv, pages, page_size, d).sum(dim=3) / page_size
    if means_dtype is not None:
        means = round_page_means(means, means_dtype).to(torch.float32)
    qsum = q.to(torch.float32).view(b, hkv, group, tq, d).sum(dim=2)
    scores = torch.einsum("bhqd,bhpd->bhqp", qsum, means)  # [B, Hkv, Tq, P]
    held = (torch.arange(tq, device=q.device) + (tk - tq)) // page_size + 1  # pages per query
    page = torch.arange(pages, device=q.device)[None, :]
    local = (page >= held[:, None] - local_pages) & (page < held[:, None])  # [Tq, P]
    candidates = scores.masked_fill(~(page < held[:, None] - local_pages), float("-inf"))
    mask = _add_top_pages(local.expand(b, hkv, tq, pages).clone(), candidates,
                          min(topk_pages - local_pages, pages))
    tokens = page_mask_to_tokens(mask, page_size)[..., :tk]
    return tokens & causal_visibility(tq, tk, q.device)


def causal_attention_probs(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None,
                           sm_scale: float | None = None) -> torch.Tensor:
    """float32 softmax weights ``[B, Hq, Tq, Tk]`` of every query over its selected keys
    (``mask`` ``[B, Hkv, Tq, Tk]``, ``None``: every visible key, i.e. dense causal)."""
    import torch

    group = _check_qk(q, k)
    causal = causal_visibility(q.shape[2], k.shape[2], q.device)
    mask = causal if mask is None else mask & causal
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(q.shape[3])
    logits = _causal_logits(q, k, group) * scale
    logits = logits.masked_fill(~mask.unsqueeze(-3), float("-inf"))  # broadcast over G
    probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    return probs.reshape(q.shape[0], q.shape[1], q.shape[2], k.shape[2])


def causal_masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            mask: torch.Tensor | None = None, sm_scale: float | None = None
                            ) -> torch.Tensor:
    """Attention of every query over its selected keys, float32 ``[B, Hq, Tq, head_dim]``."""
    import torch

    probs = causal_attention_probs(q, k, mask, sm_scale)
    b, hq, tq, tk = probs.shape
    hkv = k.shape[1]
    out = torch.einsum("bhgqk,bhkd->bhgqd", probs.view(b, hkv, hq // hkv, tq, tk),
                       v.to(torch.float32))
    return out.reshape(b, hq, tq, v.shape[3])
