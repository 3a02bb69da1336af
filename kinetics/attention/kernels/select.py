"""Triton kernels of the block top-k page selection (imported lazily: needs triton).

See :mod:`kinetics.attention.select` for what they compute.
"""

import triton
import triton.language as tl


@triton.jit
def _summed_query(q_ptr, req, head, KV_HEADS: tl.constexpr, GROUP: tl.constexpr,
                  GROUP_P2: tl.constexpr, HEAD_DIM: tl.constexpr):
    d = tl.arange(0, HEAD_DIM)
    g = tl.arange(0, GROUP_P2)
    q_rows = req * (KV_HEADS * GROUP) + head * GROUP + g
    q = tl.load(q_ptr + q_rows[:, None] * HEAD_DIM + d[None, :],
                mask=(g < GROUP)[:, None], other=0.0).to(tl.float32)
    return tl.sum(q, axis=0)  # [D]

@triton.jit
def _score_chunk(qsum, means_ptr, table_ptr, scores_ptr, req, head, pid, start,
                 n_cand, table_stride, max_pages, KV_HEADS: tl.constexpr,
                 HEAD_DIM: tl.constexpr, BLOCK_P: tl.constexpr):
    d = tl.arange(0, HEAD_DIM)
    p = start + tl.arange(0, BLOCK_P)
    cand = p < n_cand
    rows = pid.to(tl.int64) * max_pages + p  # key_means is [batch * kv_heads, max_pages, D]
    kbar = tl.load(means_ptr + rows[:, None] * HEAD_DIM + d[None, :],
                   mask=cand[:, None], other=0.0).to(tl.float32)
    s = tl.sum(kbar * qsum[None, :], axis=1)
    tl.store(scores_ptr + pid * max_pages + p, s, mask=p < max_pages)

@triton.jit
def _radix_threshold(ukey, m, RADIX: tl.constexpr, ROUNDS: tl.constexpr):
    """Largest ``T`` (int64 in ``[0, 2^32)``) with ``count(ukey >= T) >= m`` for the
    uint32 keys ``ukey``: ``ROUNDS`` rounds, each splitting the candidate range into
    ``RADIX + 1`` parts and counting the keys above its ``RADIX`` thresholds together
    (one block-wide reduction per round; ``(RADIX + 1) ** ROUNDS >= 2^32``)."""
    j = tl.arange(0, RADIX).to(tl.int64)
    lo = tl.full((), 0, tl.int64)
    hi = tl.full((), 4294967295, tl.int64)
    for _ in range(ROUNDS):
        step = (hi - lo + 1 + RADIX) // (RADIX + 1)  # ceil(width / (RADIX + 1))
        cand = lo + (j + 1) * step  # [RADIX]
        in_range = cand <= hi
        c32 = tl.where(in_range, cand, 0).to(tl.uint32)
        cnt = tl.sum((ukey[None, :] >= c32[:, None]).to(tl.int32), axis=1)  # [RADIX]
        n_ok = tl.sum((in_range & (cnt >= m)).to(tl.int64), axis=0)
        hi = tl.minimum(hi, lo + (n_ok + 1) * step - 1)
        lo = lo + n_ok * step
    return lo


@triton.jit
def _select(scores_ptr, table_ptr, out_ptr, req, head, pid, n_pages, table_stride,
            max_pages, out_offset, KV_HEADS: tl.constexpr, TOPK: tl.constexpr,
            LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr, BLOCK_N: tl.constexpr,
            BITONIC: tl.constexpr, K_P2: tl.constexpr, RADIX: tl.constexpr,
            ROUNDS: tl.constexpr):
    n_cand = n_pages - LOCAL_PAGES
    m = tl.minimum(TOPK - LOCAL_PAGES, n_cand)
    p = tl.arange(0, BLOCK_N)
    valid = (p < n_cand) & (p < max_pages)
    s = tl.load(scores_ptr + pid * max_pages + p, mask=valid, other=0.0,
                cache_modifier=".cg")
    bits = s.to(tl.int32, bitcast=True)
    key = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # int32, ordered like the floats
    key = tl.where(valid, key, -2147483648)
    base = out_ptr + out_offset + pid * TOPK
    if BITONIC:
        # (key, BLOCK_N - 1 - page) packed in int64: tl.topk's bitonic top-k returns the
        # K_P2 largest, best first, lower page first among equal scores
        packed = (key.to(tl.int64) << 32) | (BLOCK_N - 1 - p).to(tl.int64)
        best = tl.topk(packed, K_P2)
        jj = tl.arange(0, K_P2)
        page = BLOCK_N - 1 - (best & 0xFFFFFFFF).to(tl.int32)
        take = jj < m
        phys = tl.load(table_ptr + req * table_stride + page, mask=take, other=0)
        tl.store(base + jj, phys * KV_HEADS + head, mask=take)
    else:
        if RADIX > 0:
            # the same threshold by a RADIX-way search on the unsigned image (key + 2^31)
            ukey = tl.where(valid, (key ^ -2147483648).to(tl.uint32, bitcast=True), 0)
            thr = (_radix_threshold(ukey, m, RADIX, ROUNDS) - 2147483648).to(tl.int32)
        else:
            # largest T with count(key >= T) >= m: binary search over the int32 range
            # (bounds kept in int64, compares in int32; invalid keys sit at INT32_MIN and
            # never decide the answer because m <= number of valid keys)
            lo = tl.full((), -2147483648, tl.int64)
            hi = tl.full((), 2147483647, tl.int64)
            for _ in range(32):
                mid = (lo + hi + 1) >> 1
                cnt = tl.sum((key >= mid.to(tl.int32)).to(tl.int32), axis=0)
                ok = cnt >= m
                lo = tl.where(ok, mid, lo)
                hi = tl.where(ok, hi, mid - 1)
            thr = lo.to(tl.int32)
        gt = valid & (key > thr)
        eq = valid & (key == thr)
        need = m - tl.sum(gt.to(tl.int32), axis=0)
        eq_rank = tl.cumsum(eq.to(tl.int32), axis=0)
        sel = gt | (eq & (eq_rank <= need))
        pos = tl.cumsum(sel.to(tl.int32), axis=0) - 1
        phys = tl.load(table_ptr + req * table_stride + p, mask=sel, other=0)
        tl.store(base + pos, phys * KV_HEADS + head, mask=sel)
    j = tl.arange(0, LOCAL_P2)
    lp = n_pages - LOCAL_PAGES + j
    lmask = (j < LOCAL_PAGES) & (lp >= 0)
    lphys = tl.load(table_ptr + req * table_stride + lp, mask=lmask, other=0)
    tl.store(base + tl.maximum(m, 0) + j, lphys * KV_HEADS + head, mask=lmask)

@triton.jit
def _score_kernel(q_ptr, means_ptr, table_ptr, lens_ptr, scores_ptr,
                  table_stride, max_pages,
                  KV_HEADS: tl.constexpr, GROUP: tl.constexpr, GROUP_P2: tl.constexpr,
                  HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr,
                  LOCAL_PAGES: tl.constexpr, BLOCK_P: tl.constexpr):
    pid = tl.program_id(0)
    req = pid // KV_HEADS
    head = pid % KV_HEADS
    qsum = _summed_query(q_ptr, req, head, KV_HEADS, GROUP, GROUP_P2, HEAD_DIM)
    n_pages = (tl.load(lens_ptr + req) + PAGE_SIZE - 1) // PAGE_SIZE
    _score_chunk(qsum, means_ptr, table_ptr, scores_ptr, req, head, pid,
                 tl.program_id(1) * BLOCK_P, n_pages - LOCAL_PAGES, table_stride,
                 max_pages, KV_HEADS, HEAD_DIM, BLOCK_P)

@triton.jit
def _select_kernel(scores_ptr, table_ptr, lens_ptr, out_ptr,
                   table_stride, max_pages, out_offset,
                   KV_HEADS: tl.constexpr, PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr,
                   LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr,
                   BLOCK_N: tl.constexpr, BITONIC: tl.constexpr, K_P2: tl.constexpr,
                   RADIX: tl.constexpr, ROUNDS: tl.constexpr):
    pid = tl.program_id(0)
    req = pid // KV_HEADS
    head = pid % KV_HEADS
    n_pages = (tl.load(lens_ptr + req) + PAGE_SIZE - 1) // PAGE_SIZE
    _select(scores_ptr, table_ptr, out_ptr, req, head, pid, n_pages, table_stride,
            max_pages, out_offset, KV_HEADS, TOPK, LOCAL_PAGES, LOCAL_P2, BLOCK_N, BITONIC, K_P2,
            RADIX, ROUNDS)

@triton.jit
def _fused_kernel(q_ptr, means_ptr, table_ptr, lens_ptr, scores_ptr, out_ptr,
                  table_stride, max_pages, out_offset,
                  KV_HEADS: tl.constexpr, GROUP: tl.constexpr, GROUP_P2: tl.constexpr,
                  HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr,
                  LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr,
                  BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, NUM_CHUNKS: tl.constexpr,
                  BITONIC: tl.constexpr, K_P2: tl.constexpr, RADIX: tl.constexpr,
                  ROUNDS: tl.constexpr):
    pid = tl.program_id(0)
    req = pid // KV_HEADS
    head = pid % KV_HEADS
    qsum = _summed_query(q_ptr, req, head, KV_HEADS, GROUP, GROUP_P2, HEAD_DIM)
    n_pages = (tl.load(lens_ptr + req) + PAGE_SIZE - 1) // PAGE_SIZE
    n_cand = n_pages - LOCAL_PAGES
    for c in range(NUM_CHUNKS):
        _score_chunk(qsum, means_ptr, table_ptr, scores_ptr, req, head, pid, c * BLOCK_P,
                     n_cand, table_stride, max_pages, KV_HEADS, HEAD_DIM, BLOCK_P)
    tl.debug_barrier()  # this program's score stores are visible to all its threads
    _select(scores_ptr, table_ptr, out_ptr, req, head, pid, n_pages, table_stride,
            max_pages, out_offset, KV_HEADS, TOPK, LOCAL_PAGES, LOCAL_P2, BLOCK_N, BITONIC, K_P2,
            RADIX, ROUNDS)


@triton.jit
def _score_select_kernel(q_ptr, means_ptr, table_ptr, lens_ptr, scores_ptr, out_ptr,
                         counter_ptr, table_stride, max_pages, out_offset,
                         KV_HEADS: tl.constexpr, GROUP: tl.constexpr, GROUP_P2: tl.constexpr,
                         HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr, TOPK: tl.constexpr,
                         LOCAL_PAGES: tl.constexpr, LOCAL_P2: tl.constexpr,
                         BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
                         NUM_CHUNKS: tl.constexpr, BITONIC: tl.constexpr,
                         K_P2: tl.constexpr, RADIX: tl.constexpr, ROUNDS: tl.constexpr):
    """Scoring spread over (row, chunk) programs; the last chunk of a row to finish
    (an acq_rel atomic counter per row) runs that row's selection and resets the
    counter. One launch, and a row's selection overlaps other rows' scoring."""
    pid = tl.program_id(0)
    req = pid // KV_HEADS
    head = pid % KV_HEADS
    qsum = _summed_query(q_ptr, req, head, KV_HEADS, GROUP, GROUP_P2, HEAD_DIM)
    n_pages = (tl.load(lens_ptr + req) + PAGE_SIZE - 1) // PAGE_SIZE
    _score_chunk(qsum, means_ptr, table_ptr, scores_ptr, req, head, pid,
                 tl.program_id(1) * BLOCK_P, n_pages - LOCAL_PAGES, table_stride,
                 max_pages, KV_HEADS, HEAD_DIM, BLOCK_P)
    tl.debug_barrier()
    done = tl.atomic_add(counter_ptr + pid, 1, sem="acq_rel")
    if done == NUM_CHUNKS - 1:
        tl.store(counter_ptr + pid, 0)
        _select(scores_ptr, table_ptr, out_ptr, req, head, pid, n_pages, table_stride,
                max_pages, out_offset, KV_HEADS, TOPK, LOCAL_PAGES, LOCAL_P2, BLOCK_N,
                BITONIC, K_P2, RADIX, ROUNDS)
