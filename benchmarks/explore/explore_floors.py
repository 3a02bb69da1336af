"""Latency floors of the H200 at decode-step sizes (issues 14 and 15; run on the GPU).

    python3 benchmarks/explore/explore_floors.py OUT_DIR

What the fastest possible kernels take at the byte counts of the decode steps, to
tell which targets a better kernel could still reach and which sit below the
machine's floor. All times are medians of CUDA-graph replays
(``kinetics.bench.timing.time_graph``); every buffer cycles through enough copies
that the set exceeds the L2 cache, so each read comes from HBM.

* ``read``: one streaming read of S bytes (a Triton sum over the buffer; the fastest
  of 1/2/4/8 programs per SM and 8/32 KB per program step, then re-timed: median of
  three), for S from 0.5 MB to 2 GB in steps of sqrt(2),
  as GB/s and as a fraction of the 1 GB device copy of the same run (the grid's
  "% of copy" denominator); and ``torch`` copy of S bytes (read + write).
* ``launch``: an empty kernel, one graph node: the per-launch cost in a graph.
* ``chain``: the block top-k step's bytes as dependent reads (the standard point,
  8B tp-8 16k / batch 64 / 64 pages: 16.8 MB of page means, then 33.6 MB of
  selected K/V), with two tiny launches between them (top-k, merge): the floor of a
  4-kernel step that reads exactly its bytes; and the 8B tp-8 shard's four
  projection weights (6.3, 4.2, 25.2, 12.6 MB) as four dependent reads: the floor of
  the decoder layer's GEMMs as four kernels.
Writes OUT_DIR/explore-floors.{json,txt}. (The interleaved read and the empty launch
are the library's, kinetics.bench._read_kernels; the runs of 2026-11-30 used copies of
them. The library's own curve, kinetics.bench.floors.measure_read_curve, cycles up to
1,024 copies where this script cycles at most 64.)
"""

from __future__ import annotations

import itertools
import json
import sys

import torch
import triton
import triton.language as tl

from kinetics.bench._read_kernels import empty_kernel as _empty_kernel
from kinetics.bench._read_kernels import read_kernel as _read_strided_kernel
from kinetics.bench.timing import copy_bandwidth, time_graph

MB = 1_000_000
L2_SET = 300 * MB
SIZES_MB = tuple(round(0.5 * 2 ** (i / 2), 2) for i in range(25))  # 0.5 MB .. 2 GB
CHAIN_MB = (16.8, 33.6, 6.3, 4.2, 25.2, 12.6, 67.1, 134.2)


@triton.jit
def _read_kernel(x_ptr, out_ptr, n, chunk, BLOCK: tl.constexpr):
    start = tl.program_id(0).to(tl.int64) * chunk
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for off in range(0, chunk, BLOCK):
        idx = start + off + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + idx, mask=idx < n, other=0.0).to(tl.float32)
    tl.store(out_ptr + tl.program_id(0), tl.sum(acc, axis=0))


def _buffers(nbytes: float) -> list[torch.Tensor]:
    copies = max(2, min(64, int(L2_SET // nbytes) + 1))
    return [torch.ones(int(nbytes) // 2, dtype=torch.bfloat16, device="cuda")
            for _ in range(copies)]


class Reader:
    """A launch of a read kernel for one buffer size (programs per SM, step): each
    program reads one contiguous chunk, or (``strided``) every programs-th block."""

    def __init__(self, n: int, per_sm: int, block: int, strided: bool = False) -> None:
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        self.programs = max(1, min(sms * per_sm, triton.cdiv(n, block)))
        self.chunk = triton.cdiv(triton.cdiv(n, self.programs), block) * block
        if not strided:
            self.programs = triton.cdiv(n, self.chunk)
        self.steps = triton.cdiv(triton.cdiv(n, block), self.programs)
        self.n, self.block, self.strided = n, block, strided
        self.out = torch.empty(self.programs, dtype=torch.float32, device="cuda")

    def __call__(self, x: torch.Tensor) -> None:
        if self.strided:
            _read_strided_kernel[(self.programs,)](x, self.out, self.n, self.steps,
                                                   BLOCK=self.block, num_warps=8)
        else:
            _read_kernel[(self.programs,)](x, self.out, self.n, self.chunk,
                                           BLOCK=self.block, num_warps=8)


def best_reader(nbytes: float) -> tuple[float, dict]:
    """Fastest read of nbytes: (ms, launch); the best launch re-timed twice more, the
    median of the three kept (and their spread in the launch dict)."""
    bufs = _buffers(nbytes)
    best: tuple = (float("inf"), {}, None)
    for per_sm, block, strided in itertools.product((1, 2, 4, 8), (4096, 16384),
                                                    (False, True)):
        r = Reader(bufs[0].numel(), per_sm, block, strided)
        r(bufs[0])
        assert abs(r.out.sum().item() - bufs[0].numel()) < 1e-3 * bufs[0].numel()
        ms = time_graph(lambda r=r: [r(b) for b in bufs], len(bufs), repeats=30).ms
        if ms < best[0]:
            best = (ms, {"per_sm": per_sm, "block": block, "programs": r.programs,
                         "strided": strided},
                    lambda r=r: [r(b) for b in bufs])
    again = [time_graph(best[2], len(bufs), repeats=30).ms for _ in range(2)]
    runs = sorted([best[0], *again])
    return runs[1], {**best[1], "spread_ms": runs[2] - runs[0]}


def copy_ms(nbytes: float) -> float:
    bufs = _buffers(nbytes)
    dst = torch.empty_like(bufs[0])
    return time_graph(lambda: [dst.copy_(b) for b in bufs], len(bufs), repeats=30).ms


def chain_ms(sizes_mb: tuple[float, ...], tiny_after: tuple[int, ...], launches: dict) -> float:
    """Dependent reads of ``sizes_mb`` (each its best launch), an empty launch after the
    reads listed in ``tiny_after``; ms per chain, buffers cycled past the L2."""
    copies = max(2, min(64, int(L2_SET // (sum(sizes_mb) * MB)) + 1))
    sets = [[torch.ones(int(s * MB) // 2, dtype=torch.bfloat16, device="cuda")
             for s in sizes_mb] for _ in range(copies)]
    readers = []
    for s, x in zip(sizes_mb, sets[0], strict=True):
        launch = launches[s]
        readers.append(Reader(x.numel(), launch["per_sm"], launch["block"],
                              launch["strided"]))
    tiny = torch.empty(64 * 1024, dtype=torch.float32, device="cuda")

    def step():
        for bufs in sets:
            for i, (r, x) in enumerate(zip(readers, bufs, strict=True)):
                r(x)
                if i in tiny_after:
                    _empty_kernel[(64,)](tiny)
    return time_graph(step, copies, repeats=30).ms


def main() -> None:
    out = sys.argv[1]
    copy_gbps = copy_bandwidth()
    rec: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                 "triton": triton.__version__, "copy_gbps_1gb": copy_gbps, "read": []}
    lines = [f"device {rec['device']}, 1 GB copy {copy_gbps:.0f} GB/s"]
    launches = {}
    for size in sorted(set(SIZES_MB + CHAIN_MB)):
        ms, launch = best_reader(size * MB)
        cms = copy_ms(size * MB)
        launches[size] = launch
        row = {"mb": size, "read_ms": ms, "read_gbps": size * MB / (ms * 1e-3) / 1e9,
               "copy_ms": cms, "copy_gbps": 2 * size * MB / (cms * 1e-3) / 1e9, **launch}
        row["read_fraction_of_copy"] = row["read_gbps"] / copy_gbps
        rec["read"].append(row)
        lines.append(f"read {size:8.1f} MB {ms*1e3:8.2f} us {row['read_gbps']:6.0f} GB/s "
                     f"({row['read_fraction_of_copy']:.0%} of 1 GB copy); copy "
                     f"{cms*1e3:8.2f} us {row['copy_gbps']:6.0f} GB/s  {launch}")
        print(lines[-1], flush=True)
    tiny = torch.empty(64 * 1024, dtype=torch.float32, device="cuda")
    empty = time_graph(lambda: [_empty_kernel[(64,)](tiny) for _ in range(64)], 64,
                       repeats=30).ms
    rec["empty_launch_ms"] = empty
    lines.append(f"empty launch in a graph {empty*1e3:.2f} us")
    rec["chain_blocktopk_4"] = chain_ms((16.8, 33.6), (0, 1), launches)
    rec["chain_blocktopk_2"] = chain_ms((16.8, 33.6), (), launches)
    rec["chain_weights_4"] = chain_ms((6.3, 4.2, 25.2, 12.6), (), launches)
    rec["chain_blocktopk_b256_4"] = chain_ms((67.1, 134.2), (0, 1), launches)
    lines.append(f"chain: read 16.8 MB, empty, read 33.6 MB, empty "
                 f"{rec['chain_blocktopk_4']*1e3:.2f} us; the two reads alone "
                 f"{rec['chain_blocktopk_2']*1e3:.2f} us (byte floor at 1 GB copy rate "
                 f"{50.4e6 / (copy_gbps * 1e9) * 1e6:.2f} us)")
    lines.append(f"chain: the four weight reads 6.3, 4.2, 25.2, 12.6 MB "
                 f"{rec['chain_weights_4']*1e3:.2f} us (byte floor "
                 f"{48.3e6 / (copy_gbps * 1e9) * 1e6:.2f} us)")
    lines.append(f"chain at batch 256 (67.1 MB means, 134.2 MB K/V, two empty launches) "
                 f"{rec['chain_blocktopk_b256_4']*1e3:.2f} us")
    print("\n".join(lines[-4:]), flush=True)
    with open(f"{out}/explore-floors.json", "w") as fh:
        json.dump(rec, fh, indent=1)
    with open(f"{out}/explore-floors.txt", "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
