"""Launch options of the fused block top-k kernel on a few grid cells (H200 exploration).

    python benchmarks/explore/explore_fused.py OUT.json

Per cell (attention only, the grid's replicas and timing): the separate path's step
(selection kernels + split-KV attention) and the fused step with its default launch and
with one option changed at a time (warps, splits, one launch vs two, chunk, tile,
stages). Every variant is checked first on replica 0 (the
selection vs the reference up to ties, the output vs the default fused output, which
is itself checked against the float32 reference). The kernels are compiled in
parallel processes first (benchmarks/gpu/precompile_fused.py). Prints a table, writes
JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))

CELLS = [("qwen3-8b", 16384, 64, 64), ("qwen3-8b", 65536, 16, 64),
         ("qwen3-8b", 131072, 16, 64), ("qwen3-32b", 16384, 64, 64),
         ("qwen3-8b", 131072, 1, 64), ("qwen3-8b", 32768, 4, 64),
         ("qwen3-8b", 16384, 256, 64), ("qwen3-8b", 65536, 256, 128)]


def variants(launch) -> dict[str, dict]:
    """Options to try against the cell's default ``launch`` (a FusedLaunch)."""
    out = {"default": {}, "warps8": dict(num_warps=8), "stages2": dict(num_stages=2),
           "tile4" if launch.tile_pages != 4 else "tile8": dict(
               tile_pages=4 if launch.tile_pages != 4 else 8)}
    s = launch.splits
    if s > 1:
        out["two_launches"] = dict(one_launch=False)
        out["splits/2"] = dict(splits=s // 2)
    out["splits*2"] = dict(splits=2 * s, one_launch=False)
    if launch.chunk_pages >= 512:
        out["chunk/2"] = dict(chunk_pages=launch.chunk_pages // 2)
    return out


def main(path: str) -> None:
    import torch
    from precompile_fused import precompile

    from kinetics.attention import reference
    from kinetics.attention.checks import check_selection
    from kinetics.attention.decode import (
        FusedBlockTopkDecode,
        build_blocktopk_decode,
        choose_fused_launch,
    )
    from kinetics.bench.grid import GridCell, GridSpec, replicas_for
    from kinetics.bench.layer import time_steps
    from kinetics.bench.spec import DecodeSpec, build_workload, rel_err

    spec = GridSpec()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    plan = []
    for model, context, batch, pages in CELLS:
        hq, hkv = DecodeSpec(model=model, tp=8).local_heads()
        launch = choose_fused_launch(batch * hkv, context // 16, pages, 1, 16, sms)
        for name, opts in variants(launch).items():
            plan.append((model, context, batch, pages, hq, hkv, name, opts))
    t0 = time.monotonic()
    precompile([(hq, hkv, 128, ctx, b, k, "bf16", o) for _, ctx, b, k, hq, hkv, _, o in plan])
    print(f"compiled {len(plan)} variants in {time.monotonic() - t0:.0f} s", flush=True)
    records = []
    for model, context, batch, pages in CELLS:
        cell = GridCell(model, context, batch, pages)
        dense_b, sparse_b = cell.step_bytes(spec)
        cfg = cell.spec(spec, replicas_for(dense_b, sparse_b, spec, l2))
        w = build_workload(cfg)
        q0, c0 = w.queries[0], w.caches[0]
        sep = [build_blocktopk_decode(c, w.q_heads, pages, 1, impl="separate") for c in w.caches]
        rec = {"cell": [model, context, batch, pages], "replicas": cfg.replicas,
               "separate_ms": time_steps(w, sep, spec.repeats).ms, "fused": {}}
        del sep
        base_out = None
        for m, ctx, b, k, _, _, name, opts in plan:
            if (m, ctx, b, k) != (model, context, batch, pages):
                continue
            decs = [FusedBlockTopkDecode(c, w.q_heads, pages, 1, **opts) for c in w.caches]
            out = torch.full_like(q0, float("nan"))
            decs[0](q0, out)
            torch.cuda.synchronize()
            sel = check_selection(decs[0].selected_page_mask(), q0, c0, pages, 1)
            if base_out is None:
                ref = (reference.blocktopk_decode(q0, c0, pages, 1,
                                                  page_mask=decs[0].selected_page_mask())
                       if dense_b <= 2e9 else out)
                err, base_out = rel_err(out, ref), out.clone()
            else:
                err = rel_err(out, base_out)
            ok = sel.passed and bool(torch.isfinite(out).all()) and err < 1e-2
            ms = time_steps(w, decs, spec.repeats).ms
            rec["fused"][name] = {"options": opts, "launch": str(decs[0].launch), "ms": ms,
                                  "ok": ok, "rel_err": err,
                                  "selection_identical": sel.identical_fraction}
            print(f"{model} {context} {batch} {pages} {name:13s} {ms * 1e3:8.2f} us "
                  f"{'ok' if ok else 'FAIL'} {decs[0].launch}", flush=True)
            del decs
        records.append(rec)
        del w
        torch.cuda.empty_cache()
    Path(path).write_text(json.dumps({"device": torch.cuda.get_device_name(),
                                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                      "cells": records}, indent=1))
    print("\ncell                        separate   default   best variant")
    for rec in records:
        best = min(rec["fused"].items(), key=lambda kv: kv[1]["ms"] if kv[1]["ok"] else 1e9)
        print(f"{' '.join(map(str, rec['cell'])):27s} {rec['separate_ms'] * 1e3:8.2f} "
              f"{rec['fused']['default']['ms'] * 1e3:9.2f}   {best[0]} {best[1]['ms'] * 1e3:.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
