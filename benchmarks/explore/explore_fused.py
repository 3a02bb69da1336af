"""Device exploration: top-k fused into the Triton attention, batch chunks on streams.

Standard size (Qwen3-8B tp 8: 4 q / 1 kv head, d 128, 16k context, batch 64, 64 pages
of 16). For each variant: correctness (poisoned output, rel err vs the float32
reference, selection vs torch.topk up to ties, twice: counters must reset), then ms
per step (median of CUDA-graph replays over 4 cache replicas) for the full step, the
selection launches alone and the attention launches alone; dense in the same run.
Prints a kernel breakdown, then the table last. Usage:
python benchmarks/gpu/explore_fused.py

A record: it runs against the library of commit 72d6910 (see explore_common.py).
"""

from __future__ import annotations

import json
import os

import torch
from explore_common import (  # noqa: E402,F401
    CTX,
    HKV,
    HQ,
    PS,
    B,
    D,
    K,
    R,
    caches,
    cfg,
    gen,
    kernel_table,
    outs,
    qs,
    timed,
)
from kinetics.attention.gpu import (
    ChunkedBlockTopkDecode,
    FlashinferBlockTopkDecode,
    FlashinferDenseDecode,
)

from kinetics import bench
from kinetics.attention import reference

rows = []


dense = [FlashinferDenseDecode(c, HQ) for c in caches]
dense_ms = timed(dense, "full")
rows.append(("dense (flashinfer)", dense_ms, None, None, True))
del dense

SEL = dict(algorithm="bitonic", select_warps=8, score_warps=8, block_p=128)
TRI = dict(attention="triton", splits=4, tile_pages=4, selector_options=SEL)
FS = dict(TRI, fused_select=True)
RAD = dict(SEL, algorithm="radix", radix=16, select_warps=16)
# run 2 (benchmarks/gpu/runs/2026-11-25-h100-explore-fused-2.txt); run 1 (-1.txt) timed
# bitonic with 2 and 4 streams, fused select (s4t4 r16 with a merge launch, r16/r32 fm,
# s8t2 r16 fm, r16 with and without fm on 2 streams) and flashinfer on 2 streams
variants = [
    ("tri s4t4 | bitonic (default)", dict(TRI)),
    ("tri s4t4 | bitonic | 2 streams", dict(TRI, chunks=2)),
    ("tri s4t4 | radix16 w16", dict(TRI, selector_options=RAD)),
    ("tri s4t4 | radix16 w8", dict(TRI, selector_options=dict(RAD, select_warps=8))),
    ("tri s4t4 | radix16 w4", dict(TRI, selector_options=dict(RAD, select_warps=4))),
    ("tri s4t4 | radix32 w16", dict(TRI, selector_options=dict(RAD, radix=32))),
    ("tri s4t4 | radix16 w16 | 2 streams", dict(TRI, selector_options=RAD, chunks=2)),
    ("fs s4t4 r16 fm w8", dict(FS, fused_merge=True, attn_warps=8)),
    ("fs s4t4 r16 fm", dict(FS, fused_merge=True)),
    ("flashinfer | radix16 w16", dict(selector_options=RAD)),
    ("flashinfer | bitonic (default)", dict(selector_options=SEL)),
]


def build(opts):
    opts = dict(opts)
    chunks = opts.pop("chunks", 1)
    if chunks > 1:
        return [ChunkedBlockTopkDecode(c, HQ, K, chunks=chunks, **opts) for c in caches]
    return [FlashinferBlockTopkDecode(c, HQ, K, **opts) for c in caches]


def check(decs):
    outs[0].fill_(float("nan"))
    decs[0](qs[0], outs[0])
    torch.cuda.synchronize()
    chk = bench._check_selection(qs[0], caches[0], decs[0], cfg)
    ref = reference.blocktopk_decode(qs[0], caches[0], K,
                                     page_mask=decs[0].selected_page_mask())
    err = bench._rel_err(outs[0], ref)
    return chk["selection_ok"] and err < 1e-2 and bool(torch.isfinite(outs[0]).all()), err


for name, opts in variants:
    try:
        decs = build(opts)
        ok, err = check(decs)
        full = timed(decs, "full")
        sel = timed(decs, "select")
        att = timed(decs, "attend")
        full2 = timed(decs, "full")
        ok2, err2 = check(decs)  # again after many replays: counters must be reset
        rows.append((name, min(full, full2), sel, att,
                     f"{ok and ok2} err {err:.1e} {err2:.1e} full {full:.4f}/{full2:.4f}"))
        print(rows[-1], flush=True)
        del decs
    except Exception as exc:  # keep going: a variant may not compile
        rows.append((name, float("nan"), None, None, f"ERROR {type(exc).__name__}: {exc}"[:300]))
        print(rows[-1], flush=True)

# kernel breakdown: the default Triton step and the fused-select step
for name, opts in (("radix16 w16", dict(TRI, selector_options=RAD)),):
    table = kernel_table(build(opts), row_limit=6)
    print(f"== kernels: {name}")
    print(table[-1500:])

out = os.environ.get("OUT", ".")
with open(os.path.join(out, "explore-fused.json"), "w") as fh:
    json.dump([list(map(str, r)) for r in rows], fh, indent=1)
print(f"{'variant':<34} {'full ms':>8} {'sel ms':>8} {'attn ms':>8} {'x dense':>8}  ok")
for name, full, sel, att, ok in rows:
    f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"{name:<34} {f(full):>8} {f(sel):>8} {f(att):>8} {dense_ms / full:>8.2f}  {ok}")
