"""Exploration for issue 14 (run on the GPU machine): programmatic dependent launch
(PDL), the chunked top-k (each scoring program keeps its chunk's best pages) and the
sparse-attention launch options, on a few cells of the grid, then the decoder layer.

    python3 benchmarks/explore/explore_pdl.py OUT_DIR [--budget SECONDS]

Every variant is checked before it is timed (NaN-poisoned output fully written,
selection == torch.topk up to ties, rel err vs the float32 reference where the cache is
small enough, attention configs vs the default attention on the same page list).
Times: medians of CUDA-graph replays cycling the cache replicas (``time_graph``).
Writes OUT_DIR/explore-pdl.json; prints a table per part.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from kinetics.attention.decode import build_blocktopk_decode
from kinetics.attention.select import next_pow2
from kinetics.bench.decode import (
    BenchConfig,
    build_workload,
    check_method,
    decode_steps,
    make_decoder,
    rel_err,
)
from kinetics.bench.timing import copy_bandwidth, time_graph

CELLS = [  # (model, context, batch)
    ("qwen3-8b", 16384, 64), ("qwen3-8b", 65536, 16), ("qwen3-8b", 16384, 256),
    ("qwen3-8b", 131072, 4), ("qwen3-8b", 32768, 64), ("qwen3-32b", 16384, 64),
    ("qwen3-8b", 131072, 16),
]
SWEEP_CELLS = {("qwen3-8b", 16384, 64), ("qwen3-8b", 65536, 16), ("qwen3-8b", 16384, 256)}
TOPK_PAGES = 64
CHECK_KV_BYTES = 600e6


def selection_variants(max_pages: int) -> list[tuple[str, dict]]:
    out = [("base", dict()), ("pdl", dict(pdl=True))]
    if max_pages <= 1024:
        out.append(("bitonic+pdl", dict(topk="bitonic", pdl=True)))
    else:
        out.append(("flashinfer+pdl", dict(topk="flashinfer", pdl=True)))
    for bp in (64, 128, 256):
        out.append((f"chunked{bp}+pdl", dict(topk="chunked", block_p=bp, pdl=True)))
    out.append(("chunked128", dict(topk="chunked", block_p=128)))
    return out


def splits_for(rows: int, tile_pages: int, pps: int, min_tiles: int, sms: int) -> int:
    tiles = -(-TOPK_PAGES // tile_pages)
    want = next_pow2(-(-pps * sms // rows))
    return max(1, min(want, max(1, next_pow2(tiles) // min_tiles)))


def timed(w, decoders, cfg, only=None) -> float:
    rounds = 2
    return time_graph(decode_steps(w, decoders, rounds, only), rounds * cfg.replicas,
                      cfg.repeats).ms


def run_cell(model, context, batch, copy_gbps, l2, deadline, log):
    kv_bytes = batch * context * 128 * 2 * 2  # one KV head per GPU at tp 8, K and V, bf16
    sparse = batch * (TOPK_PAGES * 16 * 512 + (context // 16) * 256)
    reps = int(min(8, max(2, math.ceil(4 * l2 / sparse))))
    cfg = BenchConfig(model=model, context=context, batch_size=batch, topk_pages=TOPK_PAGES,
                      replicas=reps, repeats=30)
    w = build_workload(cfg, cfg.validate())
    compare = kv_bytes <= CHECK_KV_BYTES
    dense = [make_decoder("dense", c, w.q_heads, cfg) for c in w.caches]
    dense_ms = timed(w, dense, cfg)
    del dense
    rec = dict(model=model, context=context, batch=batch, replicas=reps, dense_ms=dense_ms,
               dense_fraction_of_copy=kv_bytes / (dense_ms * 1e-3) / 1e9 / copy_gbps,
               byte_floor_ms=sparse / copy_gbps / 1e6, variants={}, attention_sweep=[])
    log(f"\n## {model} {context // 1024}k batch {batch}: dense {dense_ms:.4f} ms "
        f"({rec['dense_fraction_of_copy']:.1%} of copy), sparse byte floor "
        f"{rec['byte_floor_ms']:.4f} ms, replicas {reps}")
    max_pages = w.caches[0].page_table.shape[1]
    best_sel = None
    for name, kw in selection_variants(max_pages):
        if time.time() > deadline:
            log("  (time budget reached)")
            break
        decs = [build_blocktopk_decode(c, w.q_heads, TOPK_PAGES, 1, **kw) for c in w.caches]
        chk = check_method("blocktopk", decs[0], w, cfg, compare_output=compare)
        sel_ms, att_ms, full_ms = (timed(w, decs, cfg, "select"), timed(w, decs, cfg, "attend"),
                                   timed(w, decs, cfg))
        rec["variants"][name] = dict(selection_ms=sel_ms, attention_ms=att_ms, full_ms=full_ms,
                                     speedup=dense_ms / full_ms, check=chk.to_dict())
        flag = "" if chk.passed else "  CHECK FAILED"
        log(f"  {name:16s} full {full_ms:.4f} ms ({dense_ms / full_ms:5.2f}x)  select "
            f"{sel_ms:.4f}  attend {att_ms:.4f}  err {chk.rel_err:.1e}{flag}")
        if chk.passed and "pdl" in name and (best_sel is None or sel_ms < best_sel[1]):
            best_sel = (kw, sel_ms)
        del decs
    if (model, context, batch) in SWEEP_CELLS and best_sel is not None:
        attention_sweep(w, cfg, best_sel[0], rec, deadline, log)
    torch.cuda.empty_cache()
    return rec


def attention_sweep(w, cfg, sel_kw, rec, deadline, log):
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    base = [build_blocktopk_decode(c, w.q_heads, TOPK_PAGES, 1, **sel_kw) for c in w.caches]
    for i, d in enumerate(base):
        d.select(w.queries[i])
    ref = base[0].attend(w.queries[0], w.outs[0]).clone()
    rows = base[0].selection.rows
    results = []
    for tile_pages in (2, 4, 8):
        for warps in (4, 8):
            for stages in (1, 3):
                for pps in (4, 8, 16):
                    for min_tiles in (1, 2):
                        if time.time() > deadline:
                            break
                        splits = splits_for(rows, tile_pages, pps, min_tiles, sms)
                        key = (tile_pages, warps, stages, splits)
                        if any(r["key"] == list(key) for r in results):
                            continue
                        decs = [build_blocktopk_decode(c, w.q_heads, TOPK_PAGES, 1, **sel_kw,
                                                       tile_pages=tile_pages, num_warps=warps,
                                                       num_stages=stages, splits=splits)
                                for c in w.caches]
                        for dec, b in zip(decs, base, strict=True):
                            dec.selection.pages.copy_(b.selection.pages)
                        w.outs[0].fill_(float("nan"))
                        out = decs[0].attend(w.queries[0], w.outs[0])
                        ok = bool(torch.isfinite(out).all()) and rel_err(out, ref) < 1e-3
                        att = timed(w, decs, cfg, "attend") if ok else math.nan
                        results.append(dict(key=list(key), tile_pages=tile_pages, warps=warps,
                                            stages=stages, splits=splits, attention_ms=att,
                                            ok=ok))
                        del decs
    results.sort(key=lambda r: (not r["ok"], r["attention_ms"]))
    rec["attention_sweep"] = results
    log("  attention configs (tile pages, warps, stages, splits): best 6 of "
        f"{len(results)}, failed {sum(not r['ok'] for r in results)}")
    for r in results[:6]:
        log(f"    {tuple(r['key'])}: {r['attention_ms']:.4f} ms")
    default = [r for r in results if r["tile_pages"] == 4 and r["warps"] == 4
               and r["stages"] == 3]
    if default:
        log(f"    default-like {tuple(default[0]['key'])}: {default[0]['attention_ms']:.4f} ms")


def layer_part(copy_gbps, best_att, log):
    out = []
    for batch in (64, 256):
        cfg = BenchConfig(context=16384, batch_size=batch, attention_only=False, replicas=2,
                          repeats=30)
        w = build_workload(cfg, cfg.validate())
        row = dict(batch=batch)
        for name, kw in (("dense", None), ("blocktopk base", {}),
                         ("blocktopk pdl", dict(pdl=True)),
                         ("blocktopk chunked+pdl", dict(topk="chunked", pdl=True, **best_att))):
            decs = [make_decoder("dense", c, w.q_heads, cfg) if kw is None else
                    build_blocktopk_decode(c, w.q_heads, 64, 1, **kw) for c in w.caches]
            row[name] = timed(w, decs, cfg)
            decs.clear()
        out.append(row)
        log(f"  layer batch {batch}: " + ", ".join(
            f"{k} {v:.4f} ms ({row['dense'] / v:.2f}x)" for k, v in row.items() if k != "batch"))
        torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--budget", type=float, default=330.0)
    args = ap.parse_args()
    deadline = time.time() + args.budget
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    props = torch.cuda.get_device_properties(0)
    copy_gbps = copy_bandwidth()
    log(f"{props.name}, copy {copy_gbps:.0f} GB/s, torch {torch.__version__}")
    cells = []
    for model, context, batch in CELLS:
        if time.time() > deadline:
            break
        cells.append(run_cell(model, context, batch, copy_gbps, props.L2_cache_size, deadline,
                              log))
    best_att = {}
    std = cells[0]["attention_sweep"] if cells else []
    if std and std[0]["ok"]:
        r = std[0]
        best_att = dict(tile_pages=r["tile_pages"], num_warps=r["warps"], num_stages=r["stages"])
    log(f"\n## decoder layer (8B tp8, 16k; chunked+pdl uses {best_att})")
    layers = layer_part(copy_gbps, best_att, log) if time.time() < deadline + 60 else []
    with open(f"{args.out}/explore-pdl.json", "w") as f:
        json.dump(dict(device=props.name, copy_gbps=copy_gbps, cells=cells, layers=layers), f,
                  indent=1)
    with open(f"{args.out}/explore-pdl.txt", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
