"""Shared setup of the device exploration scripts (explore_select.py, explore_fused.py).

Standard size: Qwen3-8B tp 8 (4 q / 1 kv head, d 128), 16k context, batch 64, pages
of 16, 64 selected pages, 4 cache replicas cycled so the working set is not
L2-resident. Importing this module allocates the replicas on the GPU.

Record of the 2026-11-25 H100 exploration (numbers in benchmarks/RESULTS.md). It
drives kernel variants that measured slower and have since left the library, so it
runs against the library of commit 72d6910, where they lived (there under
benchmarks/gpu/): ``git worktree add ../kinetics-explore 72d6910`` and ``bash
benchmarks/gpu/device_run.sh explore`` (or ``explore-gate``) in that checkout.
"""

from __future__ import annotations

import torch

from kinetics import bench
from kinetics.attention import PagedKVCache

B, HQ, HKV, D, CTX, PS, K, R = 64, 4, 1, 128, 16384, 16, 64, 4
cfg = bench.BenchConfig()
gen = torch.Generator(device="cuda").manual_seed(0)
caches = [PagedKVCache.random(B, HKV, D, CTX, page_size=PS, dtype=torch.bfloat16,
                              device="cuda", seed=i, generator=gen) for i in range(R)]
qs = [torch.randn((B, HQ, D), dtype=torch.bfloat16, device="cuda", generator=gen)
      for _ in range(R)]
outs = [torch.empty_like(q) for q in qs]


def timed(decs, what: str) -> float:
    """Median ms per step of ``what`` ('select', 'attend' or 'full') over the replicas,
    from CUDA-graph replays of 2 rounds of R steps."""
    def step():
        for _ in range(2):
            for i in range(R):
                if what == "select":
                    decs[i].select(qs[i])
                elif what == "attend":
                    decs[i].attend(qs[i], outs[i])
                else:
                    decs[i](qs[i], outs[i])
    return bench._time_graph(step, 2 * R, 100)["ms"]


def kernel_table(decs, row_limit: int) -> str:
    """The torch profiler's per-kernel CUDA time table over 5 rounds of full steps
    (after one warm-up round)."""
    for i in range(R):
        decs[i](qs[i], outs[i])
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            for i in range(R):
                decs[i](qs[i], outs[i])
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=row_limit)
