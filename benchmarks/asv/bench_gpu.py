"""asv: GPU decode attention over the regime grid of ``kinetics bench --grid``
(:class:`DecodeGrid`), and the paged generation engine end to end
(:class:`GenerateEngine`, ``kinetics bench --generate``).

One asv parameter per grid axis: ``model`` (the shard at tp 8), ``context`` (tokens
per request), ``batch`` (requests) and ``budget_tokens`` (tokens block top-k attends
per request and KV head: ``topk_pages`` = budget / page size 16), so the asv pages can
filter and plot along each. Tracked per cell: dense fraction of the copy bandwidth,
block top-k speedup over dense and its share of the byte roofline. setup_cache runs
the whole grid once (kinetics.bench.grid.run_grid, a few minutes on an H200).

Skipped (NotImplementedError in setup, asv's convention) where there is no CUDA GPU,
triton or flashinfer, and for a combination that is not a grid cell (a budget over
the context); a cell the grid skipped (memory) reads NaN. Run on a GPU machine with
`nox -s asv-gpu` (docs/ci.md).
"""

import math

try:
    from kinetics.bench.grid import (
        GRID_BATCHES,
        GRID_BUDGET_TOKENS,
        GRID_CONTEXTS,
        GRID_MODELS,
    )
except ImportError:  # an older kinetics on ASV_PYTHONPATH, or none: the grid of 2026-12
    GRID_MODELS = ("qwen3-8b", "qwen3-32b")
    GRID_CONTEXTS = (8192, 16384, 32768, 65536, 131072)
    GRID_BATCHES = (1, 4, 16, 64, 256)
    GRID_BUDGET_TOKENS = (1024, 2048)


def _key(model, context, batch, budget_tokens, page_size):
    return (model, int(context), int(batch), int(budget_tokens) // int(page_size))


class DecodeGrid:
    """Dense vs block top-k decode attention, one GPU, per grid cell."""

    timeout = 1800
    params = [list(GRID_MODELS), list(GRID_CONTEXTS), list(GRID_BATCHES),
              list(GRID_BUDGET_TOKENS)]
    param_names = ["model", "context", "batch", "budget_tokens"]

    def setup_cache(self):
        try:
            from kinetics.bench.grid import GridSpec, grid_cells, run_grid
            from kinetics.bench.spec import gpu_available
        except ImportError as exc:  # torch missing
            return {"skip": str(exc)}
        ok, reason = gpu_available()
        if not ok:
            return {"skip": reason}
        spec = GridSpec()
        cells, skipped = grid_cells(spec)
        result = run_grid(spec, progress=lambda line: None)
        ran = {(r.cell.model, r.cell.context, r.cell.batch_size, r.cell.topk_pages): r
               for r in result.cells}
        return {"page_size": spec.base.page_size, "ran": ran,
                "cells": {(c.model, c.context, c.batch_size, c.topk_pages)
                          for c in cells + [s.cell for s in skipped]}}

    def setup(self, results, model, context, batch, budget_tokens):
        if "skip" in results:
            raise NotImplementedError(results["skip"])
        if _key(model, context, batch, budget_tokens, results["page_size"]) not in results["cells"]:
            raise NotImplementedError("not a grid cell (budget over the context)")

    @staticmethod
    def _cell(results, model, context, batch, budget_tokens):
        return results["ran"].get(_key(model, context, batch, budget_tokens,
                                       results["page_size"]))

    def track_dense_fraction_of_copy(self, results, model, context, batch, budget_tokens):
        r = self._cell(results, model, context, batch, budget_tokens)
        return r.dense_fraction_of_copy if r else math.nan

    track_dense_fraction_of_copy.unit = "fraction"

    def track_blocktopk_speedup(self, results, model, context, batch, budget_tokens):
        r = self._cell(results, model, context, batch, budget_tokens)
        return r.speedup if r else math.nan

    track_blocktopk_speedup.unit = "x"

    def track_share_of_byte_roofline(self, results, model, context, batch, budget_tokens):
        r = self._cell(results, model, context, batch, budget_tokens)
        return r.share_of_roofline if r else math.nan

    track_share_of_byte_roofline.unit = "fraction"


#: the generation engine's workloads (``kinetics bench --generate``, Qwen3-1.7B shapes,
#: random weights): name -> GenerateBenchSpec fields, and the ratio each is tracked by
GENERATE_WORKLOADS = {
    "hf-512": dict(prompt_tokens=512, new_tokens=512, methods=("dense",), hf=True),
    "long-4096": dict(prompt_tokens=512, new_tokens=4096, step=True),
    "skewed": dict(prompt_tokens=512, new_tokens=4096, samples=128, skewed=True,
                   methods=("dense",)),
    "ctx-16k": dict(prompt_tokens=16384, new_tokens=256, shared_prompt=True),
}
GENERATE_RATIOS = {  # tracked ratio -> (workload, key in the record's ratios)
    "paged_over_hf": ("hf-512", "paged_over_hf"),
    "paged_over_step_dense": ("long-4096", "paged_over_step_dense"),
    "paged_over_step_blocktopk": ("long-4096", "paged_over_step_blocktopk"),
    "continuous_over_static": ("skewed", "continuous_over_static_dense"),
    "blocktopk_over_dense_16k": ("ctx-16k", "blocktopk_over_dense_decode"),
}


class GenerateEngine:
    """The paged generation engine end to end on one GPU (Qwen3-1.7B shapes, batch 32):
    each ratio of the engine's targets, taken within one run (benchmarks/RESULTS.md).
    setup_cache runs the four workloads once (a few minutes on an H200)."""

    timeout = 1800
    params = [list(GENERATE_RATIOS)]
    param_names = ["ratio"]

    def setup_cache(self):
        try:
            import torch

            from kinetics.bench.generate import GenerateBenchSpec, bench_generate
        except ImportError as exc:  # torch, or this kinetics's engine, missing
            return {"skip": str(exc)}
        if not torch.cuda.is_available():
            return {"skip": "no CUDA GPU"}
        ratios = {}
        for name, fields in GENERATE_WORKLOADS.items():
            spec = GenerateBenchSpec(model="qwen3-1.7b", batch_size=32, **fields)
            ratios[name] = bench_generate(spec, "cuda").ratios()
        return {"ratios": ratios}

    def setup(self, results, ratio):
        if "skip" in results:
            raise NotImplementedError(results["skip"])

    def track_ratio(self, results, ratio):
        workload, key = GENERATE_RATIOS[ratio]
        return results["ratios"][workload].get(key, math.nan)

    track_ratio.unit = "x"
