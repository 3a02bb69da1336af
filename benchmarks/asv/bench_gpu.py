"""asv: GPU decode attention over the regime grid of ``kinetics bench --grid``.

One asv parameter per grid cell (model shard tp 8, context, batch size, budget in
pages of 16), so each cell's history shows: dense fraction of the copy bandwidth,
block top-k speedup over dense and its share of the byte roofline. setup_cache runs
the whole grid once (kinetics.bench.grid.run_grid, a few minutes on an H200). Skipped
(NotImplementedError in setup) where there is no CUDA GPU, triton or flashinfer; a
cell the grid skipped (memory) reads NaN. Run on a GPU machine with
`asv run --environment existing:python3 --set-commit-hash $(git rev-parse HEAD)`.
"""

import math


def _cell_names():
    try:
        from kinetics.bench.grid import GridSpec, grid_cells
    except ImportError:  # the package is not importable here
        return ["unavailable"]
    spec = GridSpec()
    cells, skipped = grid_cells(spec)
    every = cells + [s.cell for s in skipped]
    return [f"{c.model}/{c.context}/{c.batch_size}/{c.topk_pages}" for c in every]


class DecodeGrid:
    timeout = 1800
    params = _cell_names()
    param_names = ["model/context/batch/pages"]

    def setup_cache(self):
        try:
            from kinetics.bench.grid import run_grid
            from kinetics.bench.spec import gpu_available
        except ImportError as exc:  # torch missing
            return {"skip": str(exc)}
        ok, reason = gpu_available()
        if not ok:
            return {"skip": reason}
        result = run_grid(progress=lambda line: None)
        return {f"{r.cell.model}/{r.cell.context}/{r.cell.batch_size}/{r.cell.topk_pages}": r
                for r in result.cells}

    def setup(self, results, cell):
        if "skip" in results:
            raise NotImplementedError(results["skip"])

    def track_dense_fraction_of_copy(self, results, cell):
        r = results.get(cell)
        return r.dense_fraction_of_copy if r else math.nan

    track_dense_fraction_of_copy.unit = "fraction"

    def track_blocktopk_speedup(self, results, cell):
        r = results.get(cell)
        return r.speedup if r else math.nan

    track_blocktopk_speedup.unit = "x"

    def track_share_of_byte_roofline(self, results, cell):
        r = results.get(cell)
        return r.share_of_roofline if r else math.nan

    track_share_of_byte_roofline.unit = "fraction"
