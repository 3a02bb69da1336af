"""Exploration for issue 14 (run on the GPU machine): the sparse-attention launch
options per cell, and fp8 (e4m3) page means for the scoring.

    python3 benchmarks/explore/explore_sweep.py OUT_DIR [--budget SECONDS]

Part A: every (tile pages, warps, stages, splits) of the Triton sparse attention on
the default selection's pages, each checked first (NaN-poisoned output fully written,
rel err < 1e-2 vs the float32 reference over the same pages), then timed attention
only. Part B: the scoring on an fp8 copy of the page means: selection and full-step
time, how often the selection equals the bf16 one, the output's rel err vs the float32
reference of the exact (bf16-ranked) selection. Times: medians of CUDA-graph replays
cycling the cache replicas. Writes OUT_DIR/explore-sweep.{json,txt}.
(An earlier script, benchmarks/explore/explore_pdl.py at commit 503fca7, timed
programmatic dependent launch and a chunked top-k: both slower, removed.)
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from kinetics.attention import reference
from kinetics.attention.checks import check_selection
from kinetics.attention.decode import build_blocktopk_decode
from kinetics.bench.layer import decode_steps
from kinetics.bench.spec import DecodeSpec, build_workload, rel_err
from kinetics.bench.timing import copy_bandwidth, time_graph

SWEEP = [("qwen3-8b", 16384, 64), ("qwen3-8b", 65536, 16), ("qwen3-8b", 16384, 256),
         ("qwen3-32b", 16384, 64), ("qwen3-8b", 131072, 16), ("qwen3-8b", 8192, 256),
         ("qwen3-8b", 32768, 256), ("qwen3-32b", 65536, 64)]
FP8 = [("qwen3-8b", 16384, 64), ("qwen3-8b", 65536, 16), ("qwen3-8b", 131072, 64),
       ("qwen3-8b", 65536, 256), ("qwen3-32b", 16384, 64)]
K = 64
REF_KV_BYTES = 2.2e9
REPEATS = 30


def workload(model, context, batch, l2):
    sparse = batch * (K * 16 * 512 + (context // 16) * 256)
    reps = int(min(8, max(2, math.ceil(4 * l2 / sparse))))
    cfg = DecodeSpec(model=model, context=context, batch_size=batch, topk_pages=K,
                     replicas=reps)
    return cfg, build_workload(cfg)


def timed(w, decoders, cfg, only=None) -> float:
    return time_graph(decode_steps(w, decoders, 2, only), 2 * cfg.replicas, REPEATS).ms


def sweep_cell(model, context, batch, l2, deadline, log):
    cfg, w = workload(model, context, batch, l2)
    base = [build_blocktopk_decode(c, w.q_heads, K, 1, impl="separate") for c in w.caches]
    for i, d in enumerate(base):
        d.select(w.queries[i])
    base_ms = timed(w, base, cfg, "attend")
    kv = batch * context * 512
    ref = None
    if kv <= REF_KV_BYTES:
        ref = reference.blocktopk_decode(w.queries[0], w.caches[0], K, 1,
                                         page_mask=base[0].selected_page_mask())
    rec = dict(model=model, context=context, batch=batch, default_ms=base_ms,
               default_splits=base[0].attention.splits, configs=[])
    for tile in (2, 4, 8):
        for warps in (2, 4, 8):
            for stages in (1, 3):
                for splits in (2, 4, 8, 16, 32):
                    if time.time() > deadline or splits * tile > K:
                        continue
                    try:
                        decs = [build_blocktopk_decode(c, w.q_heads, K, 1, impl="separate", tile_pages=tile,
                                                       num_warps=warps, num_stages=stages,
                                                       splits=splits) for c in w.caches]
                    except ValueError:
                        continue
                    for dec, b in zip(decs, base, strict=True):
                        dec.selection.pages.copy_(b.selection.pages)
                    w.outs[0].fill_(float("nan"))
                    out = decs[0].attend(w.queries[0], w.outs[0])
                    torch.cuda.synchronize()
                    err = rel_err(out, ref) if ref is not None else math.nan
                    ok = bool(torch.isfinite(out).all()) and (ref is None or err < 1e-2)
                    ms = timed(w, decs, cfg, "attend") if ok else math.nan
                    rec["configs"].append(dict(tile_pages=tile, warps=warps, stages=stages,
                                               splits=decs[0].attention.splits, ms=ms,
                                               rel_err=err, ok=ok))
                    del decs
    good = sorted((c for c in rec["configs"] if c["ok"]), key=lambda c: c["ms"])
    log(f"{model} {context // 1024}k/{batch}: default (4 pages, 4 warps, 3 stages, "
        f"{rec['default_splits']} splits) {base_ms:.4f} ms; {len(rec['configs'])} configs, "
        f"{len(rec['configs']) - len(good)} failed; best:")
    for c in good[:5]:
        log(f"   {c['tile_pages']} pages {c['warps']} warps {c['stages']} stages "
            f"{c['splits']} splits: {c['ms']:.4f} ms (err {c['rel_err']:.1e})")
    del base, w
    torch.cuda.empty_cache()
    return rec


class Fp8Means:
    """A block top-k decoder whose scoring reads an e4m3 copy of the page means."""

    def __init__(self, dec):
        self.dec = dec
        self.means = dec.cache.key_means.to(torch.float8_e4m3fn)

    def select(self, q):
        s, c = self.dec.selection, self.dec.cache
        s.selector(q, self.means, c.page_table, c.seq_lens, s.pages)

    def attend(self, q, out):
        return self.dec.attend(q, out)

    def __call__(self, q, out):
        self.select(q)
        return self.dec.attend(q, out)


def fp8_cell(model, context, batch, l2, log):
    cfg, w = workload(model, context, batch, l2)
    rec = dict(model=model, context=context, batch=batch)
    for name in ("bf16", "fp8"):
        decs = [build_blocktopk_decode(c, w.q_heads, K, 1, impl="separate") for c in w.caches]
        if name == "fp8":
            decs = [Fp8Means(d) for d in decs]
        sel, full = timed(w, decs, cfg, "select"), timed(w, decs, cfg)
        inner = decs[0] if name == "bf16" else decs[0].dec
        w.outs[0].fill_(float("nan"))
        decs[0](w.queries[0], w.outs[0])
        mask = inner.selected_page_mask()
        chk = check_selection(mask, w.queries[0], w.caches[0], K, 1)
        exact = reference.select_pages(w.queries[0], w.caches[0], K, 1)
        same_pages = float((mask & exact).sum() / exact.sum())
        err = math.nan
        if batch * context * 512 <= REF_KV_BYTES:
            err = rel_err(w.outs[0], reference.blocktopk_decode(w.queries[0], w.caches[0], K, 1))
        rec[name] = dict(selection_ms=sel, full_ms=full, rows_identical=chk.identical_fraction,
                         pages_shared_with_exact=same_pages, rel_err_vs_exact=err)
        log(f"{model} {context // 1024}k/{batch} {name}: select {sel:.4f} ms, full {full:.4f} "
            f"ms; rows identical {chk.identical_fraction:.3f}, pages shared {same_pages:.4f}, "
            f"rel err vs exact {err:.2e}")
        del decs
    del w
    torch.cuda.empty_cache()
    return rec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--budget", type=float, default=300.0)
    args = ap.parse_args()
    deadline = time.time() + args.budget
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    props = torch.cuda.get_device_properties(0)
    copy_gbps = copy_bandwidth()
    log(f"{props.name}, copy {copy_gbps:.0f} GB/s, torch {torch.__version__}")
    fp8 = [fp8_cell(*c, props.L2_cache_size, log) for c in FP8]
    sweep = []
    for cell in SWEEP:
        if time.time() > deadline:
            log("(time budget reached)")
            break
        sweep.append(sweep_cell(*cell, props.L2_cache_size, deadline, log))
    with open(f"{args.out}/explore-sweep.json", "w") as f:
        json.dump(dict(device=props.name, copy_gbps=copy_gbps, fp8=fp8, sweep=sweep), f,
                  indent=1)
    with open(f"{args.out}/explore-sweep.txt", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
