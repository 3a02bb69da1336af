"""Compile the fused block top-k kernel for every grid cell ahead of the grid, in parallel
processes (Triton compiles on first launch, one specialization per launch shape: about
70 per page-means dtype over the default grid; its on-disk cache then serves the grid).

    python benchmarks/gpu/precompile_fused.py [--workers N] [--means bf16,fp8]

Each worker builds the decoder of a cell on a stand-in cache (the real page-table
shape and dtypes, no K/V) and calls its ``compile`` (Triton's warm-up: no launch).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _shapes(means: list[str]) -> list[tuple]:
    from kinetics.bench.gate import GATE_CELLS
    from kinetics.bench.grid import GridSpec, grid_cells
    from kinetics.bench.spec import DecodeSpec
    from kinetics.models import get_model

    spec = GridSpec()
    cells, _ = grid_cells(spec)
    keys = {(c.model, c.context, c.batch_size, c.topk_pages) for c in cells} | set(GATE_CELLS)
    out = []
    for model, context, batch, pages in sorted(keys):
        hq, hkv = DecodeSpec(model=model, tp=spec.base.tp).local_heads()
        out += [(hq, hkv, get_model(model).head_dim, context, batch, pages, m, {})
                for m in means]
    return out


def compile_shapes(shapes: list[tuple]) -> int:
    """Compile the decoder of each ``(q heads, kv heads, head dim, context, batch, pages,
    means dtype, decoder options)`` (stand-in caches); returns how many."""
    import torch

    from kinetics.attention.cache import page_means_dtype
    from kinetics.attention.decode import FusedBlockTopkDecode

    for hq, hkv, d, context, batch, pages, means, options in shapes:
        cache, q = stand_in(hq, hkv, d, context, batch, page_means_dtype(means))
        FusedBlockTopkDecode(cache, hq, pages, 1, **options).compile(q, torch.empty_like(q))
    return len(shapes)


def stand_in(hq: int, hkv: int, d: int, context: int, batch: int,
             means_dtype: torch.dtype) -> tuple[SimpleNamespace, torch.Tensor]:
    """(cache, q) with a real cache's page-table shape and dtypes but no K/V (CUDA): what
    compiling the fused kernel for a cell needs."""
    import torch

    max_pages = -(-context // 16)
    cache = SimpleNamespace(
        batch_size=batch, num_kv_heads=hkv, head_dim=d, page_size=16,
        device=torch.device("cuda"),
        page_table=torch.zeros((batch, max_pages), dtype=torch.int32, device="cuda"),
        seq_lens=torch.full((batch,), context, dtype=torch.int64, device="cuda"),
        key_means=torch.zeros(64, dtype=means_dtype, device="cuda"),
        k_pages=torch.zeros(64, dtype=torch.bfloat16, device="cuda"),
        v_pages=torch.zeros(64, dtype=torch.bfloat16, device="cuda"))
    return cache, torch.zeros((batch, hq, d), dtype=torch.bfloat16, device="cuda")


def precompile(shapes: list[tuple], workers: int = 12) -> int:
    """:func:`compile_shapes` spread over ``workers`` spawned processes."""
    chunks = [shapes[i::workers] for i in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        return sum(pool.map(compile_shapes, [c for c in chunks if c]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--means", default="bf16,fp8")
    args = parser.parse_args()
    shapes = _shapes(args.means.split(","))
    start = time.monotonic()
    done = precompile(shapes, args.workers)
    print(f"precompiled the fused kernel for {done} cell shapes in "
          f"{time.monotonic() - start:.0f} s ({args.workers} processes)", flush=True)


if __name__ == "__main__":
    main()
