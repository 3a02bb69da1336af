"""Launch options of the fused block top-k kernel on a few grid cells (H200 exploration).

    python benchmarks/explore/explore_fused.py OUT.json [CELLS]

Per cell (attention only, the grid's replicas and timing): the separate path's step
(selection kernels + split-KV attention), other kernels' steps where their modules are
present (KERNEL_MODULES: e.g. ``fused_decode_prev.py``, an earlier kernel of the same
signature) and the fused step with its default launch and with one option changed at a
time (warps, splits, one launch vs two, chunk, tile, stages). Every variant is checked
first on replica 0 (the selection vs the reference up to ties, the output vs the default
fused output, which is itself checked against the float32 reference). The kernels are
compiled in parallel processes first (on stand-in caches, as
benchmarks/gpu/precompile_fused.py does). Prints a table, writes JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CELLS = [("qwen3-8b", 16384, 64, 64), ("qwen3-8b", 65536, 16, 64),
         ("qwen3-8b", 131072, 16, 64), ("qwen3-32b", 16384, 64, 64),
         ("qwen3-8b", 131072, 1, 64), ("qwen3-8b", 32768, 4, 64),
         ("qwen3-8b", 16384, 256, 64), ("qwen3-8b", 65536, 256, 128)]
PREVIOUS = "previous"  # the variant run by the previous kernel (fused_decode_prev.py)
# variants named "<first word> ..." run the kernel of these modules (beside this file;
# those of the 2026-12-04 ablation are at commit a01966f: restore them to run it; the
# radix-select kernel and its set, EXPLORE_SET=radix, are at commit 7e440ab; the TMA
# page-mean reads and EXPLORE_SET=tma at e3a1fe0; the L2 prefetch of each chunk's best
# pages and EXPLORE_SET=prefetch at 5fa59b1; a persistent staggered kernel with its own
# script, explore_staggered.py, at 571974a)
KERNEL_MODULES = {PREVIOUS: "fused_decode_prev", "+chunk": "fused_ablate_chunk",
                  "+means": "fused_ablate_means", "+gather": "fused_ablate_gather",
                  "+all": "fused_ablate_all"}


def variants(launch) -> dict[str, dict]:
    """Options to try against the cell's default ``launch`` (a FusedLaunch). With
    EXPLORE_SET=ablate: the previous kernel with each of the
    current kernel's changes alone; with EXPLORE_SET=stages: deeper software pipelines
    (``num_stages``), smaller scoring blocks and the other tile size."""
    here = Path(__file__).resolve().parent
    present = [n for n, m in KERNEL_MODULES.items() if (here / f"{m}.py").exists()]
    if os.environ.get("EXPLORE_SET") == "ablate":
        out = {name: {} for name in present}
        out["default"] = {}
        return out
    if os.environ.get("EXPLORE_SET") == "stages":  # deeper pipelines (buffers per loop)
        other_tile = 4 if launch.tile_pages != 4 else 8
        return {"default": {}, "s4": dict(num_stages=4), "s5": dict(num_stages=5),
                "s4 bp64": dict(num_stages=4, block_p=64),
                "s5 bp64": dict(num_stages=5, block_p=64),
                "s6 bp64": dict(num_stages=6, block_p=64),
                f"s4 bp64 tile{other_tile}": dict(num_stages=4, block_p=64,
                                                  tile_pages=other_tile),
                f"s5 bp64 tile{other_tile}": dict(num_stages=5, block_p=64,
                                                  tile_pages=other_tile)}
    out = {"default": {}, **({PREVIOUS: {}} if PREVIOUS in present else {}),
           "warps8": dict(num_warps=8),
           "stages2": dict(num_stages=2),
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


def decoder_class(name: str):
    """The decoder class of variant ``name``: the kernel of KERNEL_MODULES for its first
    word, else the library's."""
    import importlib

    from kinetics.attention.decode import FusedBlockTopkDecode

    module = KERNEL_MODULES.get(name.split()[0])
    if module is None:
        return FusedBlockTopkDecode

    class OtherKernel(FusedBlockTopkDecode):
        @staticmethod
        def _kernel():
            return importlib.import_module(module).fused_blocktopk_kernel

    return OtherKernel


def compile_variants(plan: list[tuple]) -> list[tuple]:
    """Compile each ``(q heads, kv heads, context, batch, pages, name, options)`` on a
    stand-in cache; returns (its key, programs per SM it fits, -1 if it did not compile)
    per entry."""
    import torch
    from precompile_fused import stand_in

    out = []
    for hq, hkv, context, batch, pages, name, options in plan:
        cache, q = stand_in(hq, hkv, 128, context, batch, torch.bfloat16)
        try:
            dec = decoder_class(name)(cache, hq, pages, 1, **options)
            ks = dec.compile(q, torch.empty_like(q))
            for k in ks:
                k._init_handles()  # loads the binary: n_regs
            fit = min(resident_programs(k.n_regs, k.metadata.shared, k.metadata.num_warps)
                      for k in ks)
        except Exception as exc:  # reported in the table
            print(f"compile {context} {batch} {name}: {type(exc).__name__}: {exc}"[:300])
            fit = -1
        out.append(((hq, context, batch, pages, name), fit))
    return out


def resident_programs(regs_per_thread: int, shared_bytes: int, num_warps: int,
                      regs_per_sm: int = 65536, shared_per_sm: int = 233472,
                      warps_per_sm: int = 64) -> int:
    """Programs of a kernel that fit on one SM at once (Hopper limits by default): by
    registers (allocated per warp in units of 256), by shared memory (1 KiB reserved per
    program) and by warps."""
    regs_per_warp = -(-regs_per_thread * 32 // 256) * 256
    return max(0, min(regs_per_sm // (regs_per_warp * num_warps),
                      shared_per_sm // (shared_bytes + 1024), warps_per_sm // num_warps))


def precompile_variants(plan: list[tuple], workers: int = 14) -> dict:
    import multiprocessing as mp

    chunks = [plan[i::workers] for i in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        return dict(kv for part in pool.map(compile_variants, [c for c in chunks if c])
                    for kv in part)


def main(path: str, cells: str = "") -> None:
    import torch

    from kinetics.attention import reference
    from kinetics.attention.checks import check_selection
    from kinetics.attention.decode import build_blocktopk_decode, choose_fused_launch
    from kinetics.bench.grid import GridCell, GridSpec, replicas_for
    from kinetics.bench.layer import time_steps
    from kinetics.bench.spec import DecodeSpec, build_workload, rel_err

    spec = GridSpec()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    chosen = [CELLS[int(i)] for i in cells.split(",")] if cells else CELLS
    plan = []
    for model, context, batch, pages in chosen:
        hq, hkv = DecodeSpec(model=model, tp=8).local_heads()
        launch = choose_fused_launch(batch * hkv, context // 16, pages, 1, 16, sms)
        for name, opts in variants(launch).items():
            plan.append((model, context, batch, pages, hq, hkv, name, opts))
    t0 = time.monotonic()
    fits = precompile_variants([(hq, hkv, ctx, b, k, name, o)
                                for _, ctx, b, k, hq, hkv, name, o in plan])
    print(f"compiled {len(plan)} variants in {time.monotonic() - t0:.0f} s", flush=True)
    records = []
    for model, context, batch, pages in chosen:
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
        for m, ctx, b, k, hq_, _, name, opts in plan:
            if (m, ctx, b, k) != (model, context, batch, pages):
                continue
            fit = fits.get((hq_, ctx, b, k, name), -1)
            if fit < 1:
                print(f"{model} {context} {batch} {pages} {name:13s} skipped: did not "
                      "compile or fits no SM", flush=True)
                continue
            decs = [decoder_class(name)(c, w.q_heads, pages, 1, **opts) for c in w.caches]
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
                                  "ok": ok, "rel_err": err, "fits_per_sm": fit,
                                  "selection_identical": sel.identical_fraction}
            print(f"{model} {context} {batch} {pages} {name:13s} {ms * 1e3:8.2f} us "
                  f"{'ok' if ok else 'FAIL'} {fit}/SM {decs[0].launch}", flush=True)
            del decs
        records.append(rec)
        del w
        torch.cuda.empty_cache()
    Path(path).write_text(json.dumps({"device": torch.cuda.get_device_name(),
                                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                      "cells": records}, indent=1))
    print("\ncell                        separate  previous   default   best variant;"
          " each variant / previous (/ default without a previous kernel)")
    for rec in records:
        best = min(rec["fused"].items(), key=lambda kv: kv[1]["ms"] if kv[1]["ok"] else 1e9)
        prev = rec["fused"].get(PREVIOUS, rec["fused"].get("default", {})).get("ms", float("nan"))
        ratios = " ".join(f"{n}={v['ms'] / prev:.3f}" for n, v in rec["fused"].items()
                          if n != PREVIOUS)
        print(f"{' '.join(map(str, rec['cell'])):27s} {rec['separate_ms'] * 1e3:8.2f} "
              f"{prev * 1e3:9.2f} {rec['fused']['default']['ms'] * 1e3:9.2f}   "
              f"{best[0]} {best[1]['ms'] * 1e3:.2f}; {ratios}")


if __name__ == "__main__":
    main(*sys.argv[1:])
