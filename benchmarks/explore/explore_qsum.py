"""Exploration for issue 14 (run on the GPU machine): why the Qwen3-32B shard's page
scoring is slower than the Qwen3-8B shard's on the same bytes.

    python3 benchmarks/explore/explore_qsum.py OUT_DIR

The scoring kernel dots each page mean with the GQA group's summed query. The grid
(run 3) shows the 32B shard (group 8) scoring the same page-mean bytes 1.3-1.6x
slower than the 8B shard (group 4). Suspect: the query sum is a reduction over a
[group, head_dim] tile, and its layout (which depends on the group) propagates to the
page-mean load. Three variants of the kernel, identical otherwise, timed alone on the
same inputs: ``tile`` (the library's: sum of a [group, D] tile), ``loop`` (the group's
rows added one by one as [D] vectors), ``presummed`` (query summed beforehand,
float32 [rows, D]). Scores checked against torch (float32). Medians of CUDA-graph
replays cycling enough page-mean replicas to exceed the L2.
Writes OUT_DIR/explore-qsum.{json,txt}.
"""

from __future__ import annotations

import itertools
import json
import sys

import torch
import triton
import triton.language as tl

from kinetics.bench.timing import time_graph

D = 128
CELLS = [(4, 16384, 64), (8, 16384, 64), (4, 65536, 16), (8, 65536, 16), (4, 131072, 64),
         (8, 131072, 64), (4, 16384, 256), (8, 16384, 256)]


@triton.jit
def _score(q_ptr, qs_ptr, means_ptr, scores_ptr, max_pages, GROUP: tl.constexpr,
           GROUP_P2: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_P: tl.constexpr,
           MODE: tl.constexpr):
    row = tl.program_id(0)
    d = tl.arange(0, HEAD_DIM)
    if MODE == 0:  # tile
        g = tl.arange(0, GROUP_P2)
        q = tl.load(q_ptr + (row * GROUP + g)[:, None] * HEAD_DIM + d[None, :],
                    mask=(g < GROUP)[:, None], other=0.0).to(tl.float32)
        qsum = tl.sum(q, axis=0)
    elif MODE == 1:  # loop
        qsum = tl.zeros((HEAD_DIM,), dtype=tl.float32)
        for i in tl.static_range(GROUP):
            qsum += tl.load(q_ptr + (row * GROUP + i) * HEAD_DIM + d).to(tl.float32)
    else:  # presummed
        qsum = tl.load(qs_ptr + row * HEAD_DIM + d)
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    ok = p < max_pages
    means = row.to(tl.int64) * max_pages + p
    kbar = tl.load(means_ptr + means[:, None] * HEAD_DIM + d[None, :], mask=ok[:, None],
                   other=0.0).to(tl.float32)
    tl.store(scores_ptr + row * max_pages + p, tl.sum(kbar * qsum[None, :], axis=1), mask=ok)


def time_cell(group: int, context: int, batch: int) -> dict:
    pages = context // 16
    nbytes = batch * pages * D * 2
    copies = max(2, min(16, int(200e6 // nbytes) + 1))
    q = torch.randn(batch * group, D, dtype=torch.bfloat16, device="cuda")
    qs = q.float().reshape(batch, group, D).sum(1).contiguous()
    means = [torch.randn(batch, pages, D, dtype=torch.bfloat16, device="cuda")
             for _ in range(copies)]
    scores = torch.empty(batch, pages, dtype=torch.float32, device="cuda")
    ref = torch.einsum("bpd,bd->bp", means[0].float(), qs)
    row = {"group": group, "context": context, "batch": batch, "mb": nbytes / 1e6,
           "times": {}}
    for mode, block_p, warps in itertools.product((0, 1, 2), (128, 256), (4, 8)):
        grid = (batch, triton.cdiv(pages, block_p))

        def run(m, mode=mode, block_p=block_p, warps=warps, grid=grid):
            _score[grid](q, qs, m, scores, pages, GROUP=group, GROUP_P2=group,
                         HEAD_DIM=D, BLOCK_P=block_p, MODE=mode, num_warps=warps)
        run(means[0])
        err = ((scores - ref).abs().max() / ref.abs().max()).item()
        ms = time_graph(lambda run=run: [run(m) for m in means], copies, repeats=30).ms
        key = f"{('tile', 'loop', 'presummed')[mode]} p{block_p} w{warps}"
        row["times"][key] = {"ms": ms, "gbps": nbytes / (ms * 1e-3) / 1e9, "err": err}
    return row


def main() -> None:
    out = sys.argv[1]
    rec = {"device": torch.cuda.get_device_name(), "triton": triton.__version__, "cells": []}
    lines = []
    for group, context, batch in CELLS:
        row = time_cell(group, context, batch)
        rec["cells"].append(row)
        best = {m: min((v["ms"], k) for k, v in row["times"].items() if k.startswith(m))
                for m in ("tile", "loop", "presummed")}
        line = (f"group {group} {context // 1024}k b{batch} {row['mb']:6.1f} MB: " +
                "; ".join(f"{m} {t * 1e3:6.2f} us ({k.split(' ', 1)[1]})"
                          for m, (t, k) in best.items()) +
                f"; max rel err {max(v['err'] for v in row['times'].values()):.1e}")
        print(line, flush=True)
        lines.append(line)
    with open(f"{out}/explore-qsum.json", "w") as fh:
        json.dump(rec, fh, indent=1)
    with open(f"{out}/explore-qsum.txt", "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
