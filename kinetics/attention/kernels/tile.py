"""The pieces every Triton decode kernel shares (imported lazily: needs triton).

A (request, KV head) row's query is its GQA group of query heads, loaded padded to
``M_ROWS`` rows by :func:`load_query_group`. :func:`attend_tile` folds one tile of cached tokens into a running online softmax:
the tile's keys and values are loaded from HND pages (``k_pages``/``v_pages``
``[num_pages, kv_heads, page_size, head_dim]``), scored against the query rows in base-2
units (``qk_scale`` = log2(e) / sqrt(head_dim)), and the running max ``m_i``, running sum
``l_i`` and unnormalised output ``acc`` (float32) are updated. Masked tokens add nothing,
and a fully masked tile leaves the state unchanged (``m_i`` starts finite, -1e30).
:func:`store_partial` writes one split's state for the merge.
"""

import triton
import triton.language as tl


@triton.jit
def attend_tile(q, k_ptr, v_ptr, page, slot, ok, head, m_i, l_i, acc, qk_scale,
                KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr):
    """One tile: ``page`` and ``slot`` ``[T]`` locate each token (physical page, slot in
    it), ``ok`` ``[T]`` says which count; ``q`` ``[M, D]``. Returns (m_i, l_i, acc)."""
    d = tl.arange(0, HEAD_DIM)
    offs = ((page.to(tl.int64) * KV_HEADS + head) * PAGE_SIZE + slot)[:, None] * HEAD_DIM \
        + d[None, :]
    k = tl.load(k_ptr + offs, mask=ok[:, None], other=0.0)  # [T, D]
    v = tl.load(v_ptr + offs, mask=ok[:, None], other=0.0)
    s = tl.dot(q, tl.trans(k)) * qk_scale  # [M, T], log2 units
    s = tl.where(ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def load_query_group(q_ptr, row, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                     M_ROWS: tl.constexpr):
    """Row ``row``'s ``GROUP`` query heads (``q`` ``[rows * GROUP, HEAD_DIM]``) as
    ``[M_ROWS, HEAD_DIM]``, zeros past the group."""
    g = tl.arange(0, M_ROWS)
    d = tl.arange(0, HEAD_DIM)
    return tl.load(q_ptr + (row * GROUP + g)[:, None] * HEAD_DIM + d[None, :],
                   mask=(g < GROUP)[:, None], other=0.0)


@triton.jit
def store_partial(part_o_ptr, part_ml_ptr, acc, m_i, l_i, row, split, splits,
                  GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, M_ROWS: tl.constexpr):
    """Split ``split`` of row ``row``'s unnormalised output, running max and running sum
    into ``[rows, splits, GROUP, HEAD_DIM]`` and ``[rows, splits, GROUP, 2]`` scratch."""
    g = tl.arange(0, M_ROWS)
    d = tl.arange(0, HEAD_DIM)
    gmask = g < GROUP
    base = (row * splits + split) * GROUP + g
    tl.store(part_o_ptr + base[:, None] * HEAD_DIM + d[None, :], acc, mask=gmask[:, None])
    tl.store(part_ml_ptr + base * 2, m_i, mask=gmask)
    tl.store(part_ml_ptr + base * 2 + 1, l_i, mask=gmask)
