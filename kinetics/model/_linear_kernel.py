"""Split-K Triton GEMM for decode-step projections (imported only with CUDA and triton).

A decode step multiplies a few activation rows (M = batch, 1-256) by a weight of
N x K (``F.linear`` layout, K contiguous): the time is streaming the weight's bytes.
cuBLAS picks few, large tiles at such shapes, and leaves most SMs idle; here the
grid is (N / BLOCK_N) x splits x (M / BLOCK_M) programs, each one reading a
BLOCK_N x (K / splits) slice of the weight once, so enough programs stream the
weight at once. Each split writes its float32 partial sum; the last program of a
tile to finish (an acq_rel atomic counter per tile) adds the partials in split order
(deterministic: the sum does not depend on which program finished last), rounds once
to the output dtype, and resets the counter for the next launch: one launch, no
memset, CUDA-graph safe. ``splits == 1`` stores the tile directly.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_COUNTERS: dict[torch.device, torch.Tensor] = {}


def tile_counters(device: torch.device, tiles: int) -> torch.Tensor:
    """A zeroed int32 counter per output tile, kept per device (each launch leaves its
    counters at zero again, so one buffer serves every launch on a stream)."""
    buf = _COUNTERS.get(device)
    if buf is None or buf.numel() < tiles:
        buf = torch.zeros(max(tiles, 4096), dtype=torch.int32, device=device)
        _COUNTERS[device] = buf
    return buf


@triton.jit
def _splitk_linear_kernel(x_ptr, w_ptr, out_ptr, part_ptr, count_ptr, M, N, K, k_per_split,
                          splits, plane, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_K: tl.constexpr):
    pid_n = tl.program_id(0)
    split = tl.program_id(1)
    pid_m = tl.program_id(2)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    m_ok = rm < M
    n_ok = rn < N
    k_start = split * k_per_split
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, k_per_split, BLOCK_K):
        k = k_start + k0 + rk
        k_ok = k < K
        a = tl.load(x_ptr + rm[:, None].to(tl.int64) * K + k[None, :],
                    mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(w_ptr + rn[:, None].to(tl.int64) * K + k[None, :],
                    mask=n_ok[:, None] & k_ok[None, :], other=0.0)
        acc = tl.dot(a, tl.trans(b), acc)
    out_mask = m_ok[:, None] & n_ok[None, :]
    out_off = rm[:, None].to(tl.int64) * N + rn[None, :]
    if splits == 1:
        tl.store(out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(part_ptr + split * plane + out_off, acc, mask=out_mask)
        tl.debug_barrier()
        tile = pid_m * tl.num_programs(0) + pid_n
        done = tl.atomic_add(count_ptr + tile, 1, sem="acq_rel")
        if done == splits - 1:
            total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for s in range(0, splits):
                total += tl.load(part_ptr + s * plane + out_off, mask=out_mask, other=0.0,
                                 cache_modifier=".cg")
            tl.store(out_ptr + out_off, total.to(out_ptr.dtype.element_ty), mask=out_mask)
            tl.store(count_ptr + tile, 0)


def splitk_linear(x: torch.Tensor, weight: torch.Tensor, block_n: int, block_k: int,
                  splits: int, num_warps: int, num_stages: int,
                  block_m: int | None = None) -> torch.Tensor:
    """``x @ weight.T`` (x [M, K], weight [N, K], both contiguous, same dtype) -> [M, N]."""
    x = x.contiguous()
    m, k = x.shape
    n = weight.shape[0]
    if block_m is None:
        block_m = max(16, min(128, triton.next_power_of_2(m)))
    k_per_split = triton.cdiv(triton.cdiv(k, splits), block_k) * block_k
    splits = triton.cdiv(k, k_per_split)
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    grid = (triton.cdiv(n, block_n), splits, triton.cdiv(m, block_m))
    part = (torch.empty(splits, m, n, dtype=torch.float32, device=x.device) if splits > 1
            else out)
    counters = tile_counters(x.device, grid[0] * grid[2])
    _splitk_linear_kernel[grid](x, weight, out, part, counters, m, n, k, k_per_split, splits,
                                m * n,
                                BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                                num_warps=num_warps, num_stages=num_stages)
    return out
