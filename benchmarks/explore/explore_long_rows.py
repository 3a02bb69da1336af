"""Device exploration for issue 14: dense and block top-k kernel variants per regime cell.

For each cell (model shard, context, batch, budget): dense (flashinfer CUDA cores,
flashinfer tensor cores fa2, Triton split-KV with the query group in one tile),
selection (one-program-per-row top-k, split selection with local top-k + merge,
flashinfer top_k / top_k_page_table_transform on the same scores) and sparse
attention (Triton sparse decode, flashinfer, Triton split-KV over the page list),
each checked first (NaN-poisoned output, rel err vs the float32 reference,
selection vs torch.topk) and timed by CUDA-graph replays over cache replicas.
Writes $OUT/explore-long-rows.json after every cell; prints a table last.

Record of the 2026-11-30 H200 run (output: 2026-11-30-h200-long-rows.{json,log} beside
this file; numbers in benchmarks/RESULTS.md). It ran on the library of commit 72d6910
plus that session's first kernels: ``kinetics/attention/split.py`` with
``kernels/dense_decode.py`` (the split-KV kernel, then with a dense mode; now, lists
only, ``kernels/sparse_decode.py``) and ``kernels/select_split.py`` (scoring + local
top-k per chunk + a per-row merge: measured slower than both other selections, removed).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback

import torch
from kinetics.attention.gpu import WORKSPACE_BYTES, FlashinferBlockTopkDecode
from kinetics.attention.split import SplitKVAttention, SplitPageSelector, TritonDenseDecode

from kinetics import bench
from kinetics.attention import PagedKVCache, reference
from kinetics.models import get_model

OUT = os.environ.get("OUT", "/tmp/out")
BUDGET_S = float(os.environ.get("EXPLORE_BUDGET_S", "400"))
T0 = time.time()
SMS = torch.cuda.get_device_properties(0).multi_processor_count
L2 = torch.cuda.get_device_properties(0).L2_cache_size
CELLS = [("qwen3-8b", 16384, 64, 64), ("qwen3-32b", 16384, 64, 64),
         ("qwen3-8b", 65536, 16, 64), ("qwen3-8b", 131072, 4, 128),
         ("qwen3-32b", 32768, 256, 128), ("qwen3-32b", 65536, 16, 64),
         ("qwen3-8b", 131072, 1, 64)]
PS, REPEATS = 16, 50


def splits_for(rows, pages, tile, ppsm):
    return max(1, min(-(-ppsm * SMS // rows), (pages // tile) // 2))


class FiDense:
    def __init__(self, cache, hq, tc, backend):
        import flashinfer
        b = cache.batch_size
        n = cache.num_request_pages().to(torch.int32)
        indptr = torch.zeros(b + 1, dtype=torch.int32, device="cuda")
        indptr[1:] = torch.cumsum(n, 0)
        idx = cache.page_table[:, :int(n.max())].reshape(-1).contiguous()
        last = cache.last_page_len().to(torch.int32)
        self.cache = cache
        self.ws = torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda")
        self.w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self.ws, "HND", use_cuda_graph=True, use_tensor_cores=tc,
            paged_kv_indptr_buffer=indptr.clone(), paged_kv_indices_buffer=idx.clone(),
            paged_kv_last_page_len_buffer=last.clone(), backend=backend)
        self.w.plan(indptr, idx, last, hq, cache.num_kv_heads, cache.head_dim, PS,
                    q_data_type=cache.dtype, kv_data_type=cache.dtype)

    def __call__(self, q, out):
        self.w.run(q, (self.cache.k_pages, self.cache.v_pages), out=out)


class Combo:
    """A block top-k decoder from a base decoder with its selector / attention swapped."""

    def __init__(self, base, select=None, attend=None):
        self.base, self._select, self._attend = base, select, attend

    def select(self, q):
        (self._select or self.base.select)(q)

    def attend(self, q, out):
        return (self._attend or self.base.attend)(q, out)

    def __call__(self, q, out):
        self.select(q)
        return self.attend(q, out)

    def selected_page_mask(self):
        return self.base.selected_page_mask()


def timed(fns, what, reps):
    def step():
        for _ in range(2):
            for i in range(reps):
                fns[i](what)
    return bench._time_graph(step, 2 * reps, REPEATS)["ms"]


def main():
    print(torch.cuda.get_device_name(), "SMs", SMS, "L2", L2, "torch", torch.__version__,
          flush=True)
    import flashinfer
    import triton
    copy = bench.copy_bandwidth()
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "triton": triton.__version__, "flashinfer": flashinfer.__version__,
            "copy_gbps": copy, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(meta, flush=True)
    results = []
    for cell in CELLS:
        if time.time() - T0 > BUDGET_S:
            print("budget spent, skipping", cell, flush=True)
            continue
        try:
            results.append(run_cell(*cell, copy))
        except Exception:
            traceback.print_exc()
            results.append({"cell": cell, "error": traceback.format_exc()[-800:]})
        torch.cuda.empty_cache()
        with open(f"{OUT}/explore-long-rows.json", "w") as f:
            json.dump({"meta": meta, "cells": results}, f, indent=1)
    print("\n== summary (ms/step; dense %copy; best sparse)")
    for r in results:
        if "error" in r:
            print(r["cell"], "ERROR")
            continue
        print(r["cell"], f"KV {r['kv_mb']:.0f} MB reps {r['reps']} roofline {r['roofline']:.2f}x")
        for part in ("dense", "select", "attend", "full"):
            print(f"  {part:7s}", "  ".join(f"{k}={v:.4f}" for k, v in r[part].items()))
        print("  checks", {k: v for k, v in r["checks"].items() if v is not True})
        d = min(r["dense"].values())
        print(f"  best dense {d:.4f} ms = {r['dense_bytes'] / d / 1e6 / copy:.1%} of copy; "
              f"best full {min(r['full'].values()):.4f} ms -> "
              f"{d / min(r['full'].values()):.2f}x "
              f"({d / min(r['full'].values()) / r['roofline']:.0%} of roofline)")


def run_cell(model_name, ctx, batch, topk, copy):
    model = get_model(model_name)
    hq, hkv = bench.local_heads(model, 8)
    d = model.head_dim
    group = hq // hkv
    rows = batch * hkv
    cfg = bench.BenchConfig(model=model_name, context=ctx, batch_size=batch, topk_pages=topk)
    dense_b = bench._step_bytes(cfg, hq, hkv, d, "dense", 0.0).total
    sparse_b = bench._step_bytes(cfg, hq, hkv, d, "blocktopk", 0.0).total
    reps = int(max(2, min(8, math.ceil(4 * L2 / sparse_b), (40 << 30) // dense_b)))
    gen = torch.Generator(device="cuda").manual_seed(0)
    caches = [PagedKVCache.random(batch, hkv, d, ctx, page_size=PS, dtype=torch.bfloat16,
                                  device="cuda", seed=i, generator=gen) for i in range(reps)]
    qs = [torch.randn((batch, hq, d), dtype=torch.bfloat16, device="cuda", generator=gen)
          for _ in range(reps)]
    outs = [torch.empty_like(q) for q in qs]
    res = {"cell": [model_name, ctx, batch, topk], "kv_mb": dense_b / 1e6, "reps": reps,
           "roofline": dense_b / sparse_b, "dense_bytes": dense_b, "sparse_bytes": sparse_b,
           "dense": {}, "select": {}, "attend": {}, "full": {}, "checks": {}}
    pages = ctx // PS
    print(f"\n== {model_name} ctx {ctx} batch {batch} topk {topk}: KV {dense_b / 1e6:.0f} MB, "
          f"reps {reps}", flush=True)
    ref_dense = reference.dense_decode(qs[0], caches[0])

    def check_out(name, fn, ref):
        outs[0].fill_(float("nan"))
        fn(qs[0], outs[0])
        torch.cuda.synchronize()
        ok = bool(torch.isfinite(outs[0]).all())
        err = bench._rel_err(outs[0], ref)
        res["checks"][name] = True if ok and err < 1e-2 else f"written={ok} err={err:.2e}"

    # ---- dense
    dense_variants = {"fi_cc": lambda c: FiDense(c, hq, False, "auto"),
                      "fi_tc_fa2": lambda c: FiDense(c, hq, True, "fa2")}
    for tile, ppsm, warps, stages in ((4, 8, 4, None), (2, 8, 4, None), (4, 16, 4, None),
                                      (4, 8, 8, 3), (8, 8, 8, None)):
        name = f"tri_t{tile}_p{ppsm}_w{warps}" + (f"_s{stages}" if stages else "")
        dense_variants[name] = (lambda c, tile=tile, ppsm=ppsm, warps=warps, stages=stages:
                                TritonDenseDecode(c, hq, tile_pages=tile, num_warps=warps,
                                                  num_stages=stages,
                                                  splits=splits_for(rows, pages, tile, ppsm)))
    for name, make in dense_variants.items():
        try:
            decs = [make(c) for c in caches]
            check_out(name, decs[0], ref_dense)
            res["dense"][name] = timed([lambda w, i=i, decs=decs: decs[i](qs[i], outs[i])
                                        for i in range(reps)], "", reps)
            print(f"dense {name}: {res['dense'][name]:.4f} ms "
                  f"({dense_b / res['dense'][name] / 1e6 / copy:.1%} of copy)", flush=True)
            del decs
        except Exception as exc:
            res["checks"][name] = f"error {type(exc).__name__}: {str(exc)[:200]}"
            print(name, res["checks"][name], flush=True)
    del ref_dense

    # ---- block top-k: bases with the Triton sparse attention (old default options)
    opts = bench._triton_attention_options(cfg)
    bases = [FlashinferBlockTopkDecode(c, hq, topk, 1, **opts) for c in caches]
    lens_s = [((topk - 1) * PS + b.last).to(torch.int64) for b in bases]
    m = topk - 1

    def split_sel(block_p):
        sels = [SplitPageSelector(batch, hq, hkv, d, PS, c.page_table.shape[1], topk, 1,
                                  block_p=block_p) for c in caches]
        return [lambda q, i=i: sels[i](q, caches[i].key_means, caches[i].page_table,
                                      caches[i].seq_lens, bases[i].indices)
                for i in range(reps)]

    def fi_sel(kind):
        import flashinfer
        n_cand = torch.full((rows,), pages - 1, dtype=torch.int32, device="cuda")

        def run(q, i):
            b = bases[i]
            b.selector.score(q, caches[i].key_means, caches[i].page_table, caches[i].seq_lens)
            if kind == "top_k":
                flashinfer.top_k(b.selector.scores[:, :pages - 1], m)
            else:
                flashinfer.top_k_page_table_transform(b.selector.scores, caches[i].page_table,
                                                      n_cand, m)
        return [lambda q, i=i: run(q, i) for i in range(reps)]

    def split_att(tile, ppsm):
        atts = [SplitKVAttention(rows, group, 1, d, PS, topk, "cuda", tile_pages=tile,
                                 splits=splits_for(rows, topk, tile, ppsm)) for _ in caches]
        return [lambda q, o, i=i: atts[i](q, bases[i].k_view, bases[i].v_view,
                                          bases[i].indices.view(rows, topk), lens_s[i], o)
                for i in range(reps)]

    selectors = {"old": [None] * reps}
    for bp in (128, 256, 512, 1024):
        if bp < 4 * pages:
            selectors[f"split{bp}"] = split_sel(bp)
    attends = {"old_triton": [None] * reps}
    for tile, ppsm in ((2, 8), (4, 8), (1, 8), (2, 16)):
        attends[f"split_t{tile}_p{ppsm}"] = split_att(tile, ppsm)
    fi_bases = None
    try:
        fi_bases = [FlashinferBlockTopkDecode(c, hq, topk, 1) for c in caches]
        attends["flashinfer"] = [lambda q, o, i=i: (fi_bases[i].indices.copy_(bases[i].indices),
                                                    fi_bases[i].attend(q, o))
                                 for i in range(reps)]
    except Exception as exc:
        res["checks"]["flashinfer_attention"] = f"error {exc}"[:200]

    ref_scores_ok = None
    for name, sel in selectors.items():
        try:
            combos = [Combo(bases[i], sel[i]) for i in range(reps)]
            bases[0].indices.fill_(-1)
            combos[0].select(qs[0])
            torch.cuda.synchronize()
            res["checks"][f"select_{name}"] = bench._check_selection(
                qs[0], caches[0], combos[0], cfg)["selection_ok"] or "selection differs"
            res["select"][name] = timed([lambda w, i=i, combos=combos: combos[i].select(qs[i])
                                         for i in range(reps)], "", reps)
            print(f"select {name}: {res['select'][name]:.4f} ms", flush=True)
        except Exception as exc:
            res["checks"][f"select_{name}"] = f"error {type(exc).__name__}: {str(exc)[:200]}"
            print(name, res["checks"][f"select_{name}"], flush=True)
    for kind in ("top_k", "page_table"):
        name = f"fi_{kind}"
        try:
            sel = fi_sel(kind)
            sel[0](qs[0])
            torch.cuda.synchronize()
            ref_scores_ok = check_fi(kind, qs[0], caches[0], bases[0], m, pages, n_cand_rows=rows)
            res["checks"][f"select_{name}"] = ref_scores_ok
            res["select"][name] = timed([lambda w, i=i, sel=sel: sel[i](qs[i]) for i in range(reps)],
                                        "", reps)
            print(f"select {name} (scoring + flashinfer): {res['select'][name]:.4f} ms",
                  flush=True)
        except Exception as exc:
            res["checks"][f"select_{name}"] = f"error {type(exc).__name__}: {str(exc)[:200]}"
            print(name, res["checks"][f"select_{name}"], flush=True)

    # attention variants over the old default selection
    for i in range(reps):
        bases[i].select(qs[i])
    torch.cuda.synchronize()
    ref_sparse = reference.blocktopk_decode(qs[0], caches[0], topk, 1,
                                            page_mask=bases[0].selected_page_mask())
    for name, att in attends.items():
        try:
            combos = [Combo(bases[i], None, att[i]) for i in range(reps)]
            check_out(f"attend_{name}", combos[0].attend, ref_sparse)
            res["attend"][name] = timed([lambda w, i=i, combos=combos: combos[i].attend(qs[i], outs[i])
                                         for i in range(reps)], "", reps)
            print(f"attend {name}: {res['attend'][name]:.4f} ms", flush=True)
        except Exception as exc:
            res["checks"][f"attend_{name}"] = f"error {type(exc).__name__}: {str(exc)[:200]}"
            print(name, res["checks"][f"attend_{name}"], flush=True)

    # full steps: old default, best split selection + best attention
    best_sel = min((k for k in res["select"] if k in selectors), key=res["select"].get)
    best_att = min(res["attend"], key=res["attend"].get)
    for name, (s, a) in {"old": ("old", "old_triton"),
                         f"{best_sel}+{best_att}": (best_sel, best_att)}.items():
        combos = [Combo(bases[i], selectors[s][i], attends[a][i]) for i in range(reps)]
        ref = reference.blocktopk_decode(qs[0], caches[0], topk, 1) if name != "old" else None
        if ref is not None:
            check_out(f"full_{name}", combos[0], ref)
        res["full"][name] = timed([lambda w, i=i, combos=combos: combos[i](qs[i], outs[i])
                                   for i in range(reps)], "", reps)
        print(f"full {name}: {res['full'][name]:.4f} ms", flush=True)
    return res


def check_fi(kind, q, cache, base, m, pages, n_cand_rows):
    """flashinfer peer's chosen pages == torch.topk's, up to ties."""
    import flashinfer
    scores = base.selector.scores[:, :pages - 1]
    want = reference.page_scores(q, cache)[:, 0, :pages - 1]
    if kind == "top_k":
        _, idx = flashinfer.top_k(scores, m)
        chosen = torch.gather(want, 1, idx.long())
    else:
        n_cand = torch.full((n_cand_rows,), pages - 1, dtype=torch.int32, device="cuda")
        phys = flashinfer.top_k_page_table_transform(base.selector.scores, cache.page_table,
                                                     n_cand, m).long()
        inv = torch.empty(cache.num_pages, dtype=torch.long, device="cuda")
        inv[cache.page_table.long().reshape(-1)] = torch.arange(
            cache.page_table.shape[1], device="cuda").repeat(cache.batch_size)
        chosen = torch.gather(want, 1, inv[phys])
    kth = want.topk(m, dim=1).values[:, -1:]
    tol = 1e-3 * want.abs().amax(1, keepdim=True)
    return bool((chosen >= kth - tol).all()) or "below the m-th score"


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    sys.exit(main())
