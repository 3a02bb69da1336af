"""Device exploration: selection-kernel variants and flashinfer decode paths, one run.

Standard size (Qwen3-8B tp 8: 4 q / 1 kv head, d 128, 16k context, batch 64, 64 pages
of 16). Prints a table of ms per step (median of CUDA-graph replays over 4 cache
replicas) for select-only and full block top-k steps, plus a kernel breakdown.
Usage: python benchmarks/gpu/explore_select.py [--tensor-cores]

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
from kinetics.attention.gpu import FlashinferBlockTopkDecode, FlashinferDenseDecode

from kinetics import bench
from kinetics.attention import reference

rows = []


class _Tiny:
    """Four trivial kernel launches per step: the CUDA-graph launch floor."""

    def __init__(self):
        self.x = torch.zeros(1024, device="cuda")

    def __call__(self, q, out):
        for _ in range(4):
            self.x.add_(1.0)


rows.append(("4 tiny kernels (launch floor)", timed([_Tiny() for _ in range(R)], "full"),
             None, None, True))
dense = [FlashinferDenseDecode(c, HQ) for c in caches]
dense_ms = timed(dense, "full")
rows.append(("dense (cuda cores)", dense_ms, None, None, True))
del dense

BEST_SEL = dict(algorithm="bitonic", select_warps=8, score_warps=8, block_p=128)
LB = dict(BEST_SEL, last_block=True)
TRI = dict(attention="triton", splits=4, tile_pages=4)
variants = [
    ("tri s4 t4 | bitonic 2k", dict(selector_options=BEST_SEL, **TRI)),
    ("tri s4 t4 | last-block bp128 w8", dict(selector_options=LB, **TRI)),
    ("tri s4 t4 | last-block bp64 w4", dict(selector_options=dict(LB, block_p=64,
                                                                   score_warps=4), **TRI)),
    ("tri s4 t4 | last-block bp32 w4", dict(selector_options=dict(LB, block_p=32,
                                                                   score_warps=4), **TRI)),
    ("tri s4 t4 fm | bitonic 2k", dict(selector_options=BEST_SEL, fused_merge=True, **TRI)),
    ("tri s4 t4 fm | last-block", dict(selector_options=LB, fused_merge=True, **TRI)),
    ("tri s8 t2 fm | last-block", dict(selector_options=LB, fused_merge=True,
                                      attention="triton", splits=8, tile_pages=2)),
    ("tri s8 t4 fm | last-block", dict(selector_options=LB, fused_merge=True,
                                      attention="triton", splits=8, tile_pages=4)),
    ("tri s16 t2 fm | last-block", dict(selector_options=LB, fused_merge=True,
                                       attention="triton", splits=16, tile_pages=2)),
    ("tri s16 t4 fm | last-block", dict(selector_options=LB, fused_merge=True,
                                       attention="triton", splits=16, tile_pages=4)),
    ("tri s4 t4 fm | last-block bisect", dict(selector_options=dict(LB, algorithm="bisect"),
                                             fused_merge=True, **TRI)),
    ("flashinfer | bitonic 2k", dict(selector_options=BEST_SEL)),
    ("flashinfer | last-block", dict(selector_options=LB)),
]
for name, opts in variants:
    try:
        decs = [FlashinferBlockTopkDecode(c, HQ, K, **opts) for c in caches]
        outs[0].fill_(float("nan"))
        decs[0](qs[0], outs[0])
        torch.cuda.synchronize()
        chk = bench._check_selection(qs[0], caches[0], decs[0], cfg)
        ref = reference.blocktopk_decode(qs[0], caches[0], K, page_mask=decs[0].selected_page_mask())
        err = bench._rel_err(outs[0], ref)
        ok = chk["selection_ok"] and err < 1e-2 and bool(torch.isfinite(outs[0]).all())
        sel = timed(decs, "select")
        full = timed(decs, "full")
        att = timed(decs, "attend")
        outs[0].fill_(float("nan"))  # again after many replays: counters must be reset
        decs[0](qs[0], outs[0])
        torch.cuda.synchronize()
        ref = reference.blocktopk_decode(qs[0], caches[0], K,
                                         page_mask=decs[0].selected_page_mask())
        err2 = bench._rel_err(outs[0], ref)
        ok = ok and err2 < 1e-2 and bench._check_selection(qs[0], caches[0], decs[0],
                                                           cfg)["selection_ok"]
        rows.append((name, full, sel, att, f"{ok} err {err:.1e} {err2:.1e}"))
        del decs
    except Exception as exc:  # keep going: a variant may not compile
        rows.append((name, float("nan"), None, None, f"ERROR {type(exc).__name__}: {exc}"[:300]))

# kernel breakdown of the default variant
decs = [FlashinferBlockTopkDecode(c, HQ, K, selector_options=LB, fused_merge=True, **TRI)
        for c in caches]
table = kernel_table(decs, row_limit=12)
out = os.environ.get("OUT", ".")
with open(os.path.join(out, "explore.json"), "w") as fh:
    json.dump([list(map(str, r)) for r in rows], fh, indent=1)
print(table[-3000:])
print(f"{'variant':<28} {'full ms':>8} {'sel ms':>8} {'attn ms':>8} {'x dense':>8}  sel ok")
for name, full, sel, att, ok in rows:
    f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"{name:<28} {f(full):>8} {f(sel):>8} {f(att):>8} {dense_ms / full:>8.2f}  {ok}")
