"""Exploration (issue 14, GPU machine): the selection's launch options (pages per
scoring program, scoring / bitonic top-k warps) on the cells where the bitonic top-k
runs (rows of up to 1,024 pages). Each option checked (selection == torch.topk up to
ties) then timed selection-only (CUDA-graph replays over the cache replicas).

    python3 benchmarks/explore/explore_select.py OUT_DIR [--long]

``--long``: cells whose rows hold 4,096-8,192 pages (the ``auto`` top-k is flashinfer's
there, so only the scoring options matter).
"""

from __future__ import annotations

import json
import math
import sys

import torch

from kinetics.attention.checks import check_selection
from kinetics.attention.decode import BlockTopkDecode, TopkPageSelection, TritonSparseAttention
from kinetics.bench.layer import decode_steps
from kinetics.bench.spec import DecodeSpec, build_workload
from kinetics.bench.timing import time_graph

REPEATS = 30
CELLS = [("qwen3-8b", 16384, 64), ("qwen3-8b", 16384, 256), ("qwen3-8b", 8192, 64),
         ("qwen3-32b", 16384, 64), ("qwen3-8b", 16384, 16), ("qwen3-32b", 8192, 256)]
if "--long" in sys.argv:  # rows of 4,096-8,192 pages: the flashinfer top-k after the scoring
    CELLS = [("qwen3-32b", 65536, 16), ("qwen3-32b", 131072, 64), ("qwen3-8b", 65536, 16),
             ("qwen3-32b", 32768, 256)]


def build(cache, hq, bp, sw, tw):
    sel = TopkPageSelection(cache, hq, 64, 1)
    s = sel.selector
    s.block_p, s.score_warps, s.select_warps = bp, sw, tw
    return BlockTopkDecode(sel, TritonSparseAttention(sel))


def main() -> None:
    out, lines, rec = sys.argv[1], [], []
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    for model, context, batch in CELLS:
        sparse = batch * (64 * 16 * 512 + (context // 16) * 256)
        cfg = DecodeSpec(model=model, context=context, batch_size=batch,
                         replicas=int(min(8, max(2, math.ceil(4 * l2 / sparse)))))
        w = build_workload(cfg)
        res = []
        for bp in (64, 128, 256):
            for sw in (4, 8):
                for tw in (4, 8, 16):
                    decs = [build(c, w.q_heads, bp, sw, tw) for c in w.caches]
                    decs[0].select(w.queries[0])
                    chk = check_selection(decs[0].selected_page_mask(), w.queries[0],
                                          w.caches[0], 64, 1)
                    ms = (time_graph(decode_steps(w, decs, 2, "select"), 2 * cfg.replicas,
                                     REPEATS).ms if chk.passed else math.nan)
                    res.append(dict(block_p=bp, score_warps=sw, select_warps=tw, ms=ms,
                                    ok=chk.passed))
        res.sort(key=lambda r: (not r["ok"], r["ms"]))
        default = [r for r in res if (r["block_p"], r["score_warps"], r["select_warps"])
                   == (128, 8, 8)][0]  # the library's default when this ran (now 128, 4, 8)
        lines.append(f"{model} {context // 1024}k/{batch}: default {default['ms']:.4f} ms; "
                     f"failed {sum(not r['ok'] for r in res)}; best " + "; ".join(
                         f"({r['block_p']},{r['score_warps']},{r['select_warps']}) "
                         f"{r['ms']:.4f}" for r in res[:4]))
        print(lines[-1], flush=True)
        rec.append(dict(model=model, context=context, batch=batch, options=res))
        del w
        torch.cuda.empty_cache()
    with open(f"{out}/explore-select.json", "w") as fh:
        json.dump(rec, fh, indent=1)


if __name__ == "__main__":
    main()
