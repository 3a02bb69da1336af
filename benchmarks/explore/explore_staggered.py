"""The staggered persistent block top-k kernel (staggered_decode.py beside this file)
against the fused kernel's default, on a few grid cells (H200 exploration).

    python benchmarks/explore/explore_staggered.py OUT.json [CELLS]

CELLS: indices into explore_fused.CELLS (default 0,1,3: the standard point, 64k / 16,
Qwen3-32B). Per cell (attention only, the grid's replicas and timing): the fused
default's step, then each staggered variant's (options of :class:`StaggeredDecode`),
each checked first on replica 0 (the selection vs the reference up to ties, the output
vs the fused output). A variant whose programs cannot all be resident is skipped (they
spin on each other). Prints a table, writes JSON.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = {
    "g4": dict(groups=4),
    "g1": dict(groups=1),
    "g2": dict(groups=2),
    "g8": dict(groups=8),
    "g4 x2": dict(groups=4, programs_per_sm=2),
    "g8 x2": dict(groups=8, programs_per_sm=2),
    "g4 chunk512": dict(groups=4, chunk_pages=512),
    "g4 parts4": dict(groups=4, attend_parts=4),
    "g4 x2 tile4": dict(groups=4, programs_per_sm=2, tile_pages=4, attend_parts=16),
    "g4 bp128": dict(groups=4, block_p=128),
}


class StaggeredDecode:
    """Launcher of ``staggered_blocktopk_kernel`` with the fused decoder's interface
    (``__call__(q, out)``, ``pages``, ``selected_page_mask``)."""

    def __init__(self, cache, num_q_heads: int, topk_pages: int, local_pages: int = 1,
                 groups: int = 4, programs_per_sm: int = 1, chunk_pages: int = 256,
                 attend_parts: int = 8, tile_pages: int = 8, block_p: int = 64,
                 num_warps: int = 4, num_stages: int = 3, programs: int | None = None) -> None:
        import torch

        from kinetics.attention.decode import LOG2_E, candidate_width, sm_count

        h = cache.num_kv_heads
        self.cache, self.topk_pages, self.local_pages = cache, topk_pages, local_pages
        self.group = num_q_heads // h
        self.rows = cache.batch_size * h
        self.max_pages = cache.page_table.shape[1]
        self.k_p2 = candidate_width(topk_pages, local_pages)
        self.chunk_pages = max(chunk_pages, self.k_p2, 16)
        self.ns = -(-self.max_pages // self.chunk_pages)
        self.block_p = min(block_p, self.chunk_pages)
        per = -(-topk_pages // attend_parts)
        self.tile_pages = min(tile_pages, 1 << (per - 1).bit_length())
        self.tiles = -(-per // self.tile_pages)
        self.na = -(-topk_pages // (self.tiles * self.tile_pages))
        self.group_rows = -(-self.rows // groups)
        self.groups = -(-self.rows // self.group_rows)
        n_items = self.groups * self.group_rows * (self.ns + self.na)
        self.programs = programs or min(sm_count(cache.device) * programs_per_sm, n_items)
        self.num_warps, self.num_stages = num_warps, num_stages
        dev, rows, d = cache.device, self.rows, cache.head_dim
        self.pages = torch.full((rows, topk_pages), -1, dtype=torch.int32, device=dev)
        self.scores = torch.zeros((rows, self.max_pages), dtype=torch.float32, device=dev)
        self.cands = torch.empty((rows, self.ns * self.k_p2), dtype=torch.int64, device=dev)
        self.part_o = torch.empty((rows, self.na, self.group, d), dtype=torch.float32,
                                  device=dev)
        self.part_ml = torch.empty((rows, self.na, self.group, 2), dtype=torch.float32,
                                   device=dev)
        self.counters = torch.zeros((rows, 3), dtype=torch.int32, device=dev)
        self.qk_scale = LOG2_E / math.sqrt(d)

    def _launch(self, q, out, compile_only: bool):
        from staggered_decode import staggered_blocktopk_kernel as kernel

        from kinetics.attention.decode import MAX_ROW_PAGES, next_pow2

        c = self.cache
        args = (q, c.key_means, c.k_pages, c.v_pages, c.page_table, c.seq_lens, self.scores,
                self.cands, self.pages, self.part_o, self.part_ml, self.counters, out,
                self.qk_scale, self.max_pages, c.page_table.stride(0), self.rows)
        meta = dict(KV_HEADS=c.num_kv_heads, GROUP=self.group, HEAD_DIM=c.head_dim,
                    PAGE_SIZE=c.page_size, TOPK=self.topk_pages,
                    TOPK_P2=next_pow2(self.topk_pages), LOCAL_PAGES=self.local_pages,
                    LOCAL_P2=max(next_pow2(self.local_pages), 2), NS=self.ns, NA=self.na,
                    GROUP_ROWS=self.group_rows, GROUPS=self.groups, PROGRAMS=self.programs,
                    CHUNK_PAGES=self.chunk_pages, BLOCK_P=self.block_p, K_P2=self.k_p2,
                    CANDS_P2=max(next_pow2(self.ns * self.k_p2), self.k_p2),
                    MAXP=MAX_ROW_PAGES, TILE_PAGES=self.tile_pages, TILES=self.tiles,
                    M_ROWS=max(16, next_pow2(self.group)), num_warps=self.num_warps,
                    num_stages=self.num_stages)
        grid = (self.programs,)
        if compile_only:
            return kernel.warmup(*args, grid=grid, **meta)
        kernel[grid](*args, **meta)
        return None

    def compile(self, q, out):
        return self._launch(q, out, compile_only=True)

    def __call__(self, q, out):
        self._launch(q, out, compile_only=False)
        return out

    def selected_page_mask(self):
        from kinetics.attention.decode import page_mask_from_ids

        return page_mask_from_ids(self.cache, self.pages)

    def describe(self) -> str:
        return (f"programs={self.programs} groups={self.groups}x{self.group_rows} "
                f"ns={self.ns}x{self.chunk_pages} na={self.na}x{self.tiles}x{self.tile_pages}")


def compile_plan(plan: list[tuple]) -> list[tuple]:
    """Compile each (hq, hkv, context, batch, pages, name, options) on a stand-in cache:
    (its key, programs per SM that fit; -1 if it did not compile)."""
    import torch
    from explore_fused import resident_programs
    from precompile_fused import stand_in

    out = []
    for hq, hkv, context, batch, pages, name, options in plan:
        cache, q = stand_in(hq, hkv, 128, context, batch, torch.bfloat16)
        try:
            k = StaggeredDecode(cache, hq, pages, 1, **options).compile(q, torch.empty_like(q))
            k._init_handles()
            fit = resident_programs(k.n_regs, k.metadata.shared, k.metadata.num_warps)
            print(f"compiled {context} {batch} {name}: {k.n_regs} regs, "
                  f"{k.metadata.shared} B shared, {fit}/SM", flush=True)
        except Exception as exc:  # reported in the table
            print(f"compile {context} {batch} {name}: {type(exc).__name__}: {exc}"[:400],
                  flush=True)
            fit = -1
        out.append(((hq, context, batch, pages, name), fit))
    return out


def main(path: str, cells: str = "0,1,3") -> None:
    import multiprocessing as mp

    import torch
    from explore_fused import CELLS

    from kinetics.attention import reference
    from kinetics.attention.checks import check_selection
    from kinetics.attention.decode import FusedBlockTopkDecode
    from kinetics.bench.grid import GridCell, GridSpec, replicas_for
    from kinetics.bench.layer import time_steps
    from kinetics.bench.spec import DecodeSpec, build_workload, rel_err

    spec = GridSpec()
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    chosen = [CELLS[int(i)] for i in cells.split(",")]
    plan = []
    for model, context, batch, pages in chosen:
        hq, hkv = DecodeSpec(model=model, tp=8).local_heads()
        plan += [(hq, hkv, context, batch, pages, n, o) for n, o in VARIANTS.items()]
    t0 = time.monotonic()
    workers = 14
    with mp.get_context("spawn").Pool(workers) as pool:
        fits = dict(kv for part in pool.map(compile_plan, [plan[i::workers]
                                                            for i in range(workers)])
                    for kv in part)
    print(f"compiled {len(plan)} variants in {time.monotonic() - t0:.0f} s", flush=True)
    records = []
    for model, context, batch, pages in chosen:
        hq, hkv = DecodeSpec(model=model, tp=8).local_heads()
        cell = GridCell(model, context, batch, pages)
        dense_b, sparse_b = cell.step_bytes(spec)
        cfg = cell.spec(spec, replicas_for(dense_b, sparse_b, spec, l2))
        w = build_workload(cfg)
        q0, c0 = w.queries[0], w.caches[0]
        fused = [FusedBlockTopkDecode(c, w.q_heads, pages, 1) for c in w.caches]
        want = torch.full_like(q0, float("nan"))
        fused[0](q0, want)
        ref = reference.blocktopk_decode(q0, c0, pages, 1,
                                         page_mask=fused[0].selected_page_mask())
        rec = {"cell": [model, context, batch, pages], "replicas": cfg.replicas,
               "fused_ms": time_steps(w, fused, spec.repeats).ms,
               "fused_rel_err": rel_err(want, ref), "staggered": {}}
        print(f"{model} {context} {batch} {pages} fused {rec['fused_ms'] * 1e3:8.2f} us",
              flush=True)
        del fused
        for name, opts in VARIANTS.items():
            fit = fits.get((hq, context, batch, pages, name), -1)
            decs = [StaggeredDecode(c, w.q_heads, pages, 1, **opts) for c in w.caches]
            sms = torch.cuda.get_device_properties(0).multi_processor_count
            if fit < 1 or decs[0].programs > fit * sms:
                print(f"  {name:18s} skipped: fits {fit}/SM, {decs[0].programs} programs",
                      flush=True)
                continue
            out = torch.full_like(q0, float("nan"))
            decs[0](q0, out)
            torch.cuda.synchronize()
            again = torch.full_like(q0, float("nan"))
            decs[0](q0, again)
            torch.cuda.synchronize()
            sel = check_selection(decs[0].selected_page_mask(), q0, c0, pages, 1)
            err = rel_err(out, want)
            ok = (sel.passed and bool(torch.isfinite(out).all()) and err < 1e-2
                  and torch.equal(out, again) and bool((decs[0].counters == 0).all()))
            ms = time_steps(w, decs, spec.repeats).ms
            rec["staggered"][name] = {"options": opts, "launch": decs[0].describe(),
                                      "ms": ms, "ok": ok, "rel_err_vs_fused": err,
                                      "fits_per_sm": fit}
            print(f"  {name:18s} {ms * 1e3:8.2f} us {ms / rec['fused_ms']:.3f} "
                  f"{'ok' if ok else 'FAIL'} {fit}/SM {decs[0].describe()}", flush=True)
            del decs
        records.append(rec)
        del w
        torch.cuda.empty_cache()
    Path(path).write_text(json.dumps({"device": torch.cuda.get_device_name(),
                                      "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                            time.gmtime()),
                                      "cells": records}, indent=1))
    print("\ncell                         fused us  best staggered; each / fused")
    for rec in records:
        ok = {n: v for n, v in rec["staggered"].items() if v["ok"]}
        best = min(ok.items(), key=lambda kv: kv[1]["ms"]) if ok else ("-", {"ms": math.nan})
        ratios = " ".join(f"{n.replace(' ', '_')}={v['ms'] / rec['fused_ms']:.3f}"
                          + ("" if v["ok"] else "!") for n, v in rec["staggered"].items())
        print(f"{' '.join(map(str, rec['cell'])):27s} {rec['fused_ms'] * 1e3:8.2f}  "
              f"{best[0]} {best[1]['ms'] * 1e3:.2f}; {ratios}")


if __name__ == "__main__":
    main(*sys.argv[1:])
