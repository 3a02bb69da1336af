"""Device exploration: selection-kernel variants and flashinfer decode paths, one run.

Standard size (Qwen3-8B tp 8: 4 q / 1 kv head, d 128, 16k context, batch 64, 64 pages
of 16). Prints a table of ms per step (median of CUDA-graph replays over 4 cache
replicas) for select-only and full block top-k steps, plus a kernel breakdown.
Usage: python benchmarks/gpu/explore_select.py [--tensor-cores]
"""

from __future__ import annotations

import json
import os
import sys

import torch

from kinetics import bench
from kinetics.attention import PagedKVCache
from kinetics.attention.gpu import FlashinferBlockTopkDecode, FlashinferDenseDecode

B, HQ, HKV, D, CTX, PS, K, R = 64, 4, 1, 128, 16384, 16, 64, 4
cfg = bench.BenchConfig()
gen = torch.Generator(device="cuda").manual_seed(0)
caches = [PagedKVCache.random(B, HKV, D, CTX, page_size=PS, dtype=torch.bfloat16,
                              device="cuda", seed=i, generator=gen) for i in range(R)]
qs = [torch.randn((B, HQ, D), dtype=torch.bfloat16, device="cuda", generator=gen)
      for _ in range(R)]
outs = [torch.empty_like(q) for q in qs]
rows = []


def timed(decs, what):
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


dense = [FlashinferDenseDecode(c, HQ) for c in caches]
dense_ms = timed(dense, "full")
rows.append(("dense (cuda cores)", dense_ms, None, None, True))
del dense

variants = {
    "2k bisect w4": dict(),
    "2k bisect sel-w8": dict(select_warps=8),
    "2k bisect sel-w16": dict(select_warps=16),
    "2k bisect bp32": dict(block_p=32),
    "2k bitonic w4": dict(algorithm="bitonic"),
    "2k bitonic w8": dict(algorithm="bitonic", select_warps=8),
    "fused bisect w4 bp64": dict(fused=True),
    "fused bisect w8 bp128": dict(fused=True, select_warps=8, block_p=128),
    "fused bisect w16 bp128": dict(fused=True, select_warps=16, block_p=128),
    "fused bitonic w8 bp128": dict(fused=True, select_warps=8, block_p=128,
                                   algorithm="bitonic"),
    "fused bitonic w16 bp128": dict(fused=True, select_warps=16, block_p=128,
                                    algorithm="bitonic"),
}
for name, opts in variants.items():
    try:
        decs = [FlashinferBlockTopkDecode(c, HQ, K, selector_options=opts) for c in caches]
        decs[0].select(qs[0])
        torch.cuda.synchronize()
        chk = bench._check_selection(qs[0], caches[0], decs[0], cfg)
        sel = timed(decs, "select")
        full = timed(decs, "full")
        att = timed(decs, "attend")
        rows.append((name, full, sel, att, chk["selection_ok"]))
    except Exception as exc:  # keep going: a variant may not compile
        rows.append((name, float("nan"), None, None, f"ERROR {type(exc).__name__}: {exc}"[:200]))

if "--tensor-cores" in sys.argv:
    try:
        decs = [FlashinferBlockTopkDecode(c, HQ, K, use_tensor_cores=True) for c in caches]
        rows.append(("sparse tensor-core attend", timed(decs, "full"), timed(decs, "select"),
                     timed(decs, "attend"), True))
        dtc = [FlashinferDenseDecode(c, HQ, use_tensor_cores=True) for c in caches]
        rows.append(("dense tensor cores", timed(dtc, "full"), None, None, True))
    except Exception as exc:
        rows.append(("tensor cores", float("nan"), None, None, f"ERROR {exc}"[:200]))

# kernel breakdown of the default variant
decs = [FlashinferBlockTopkDecode(c, HQ, K) for c in caches]
for i in range(R):
    decs[i](qs[i], outs[i])
torch.cuda.synchronize()
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
    for _ in range(5):
        for i in range(R):
            decs[i](qs[i], outs[i])
    torch.cuda.synchronize()
table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12)
out = os.environ.get("OUT", ".")
with open(os.path.join(out, "explore.json"), "w") as fh:
    json.dump([list(map(str, r)) for r in rows], fh, indent=1)
print(table[-3000:])
print(f"{'variant':<28} {'full ms':>8} {'sel ms':>8} {'attn ms':>8} {'x dense':>8}  sel ok")
for name, full, sel, att, ok in rows:
    f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"{name:<28} {f(full):>8} {f(sel):>8} {f(att):>8} {dense_ms / full:>8.2f}  {ok}")
