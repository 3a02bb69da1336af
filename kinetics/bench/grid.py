"""The regime grid (``kinetics bench --grid``): dense vs block top-k decode attention
over model shards, contexts, batch sizes and token budgets, one GPU.

Every cell is a :class:`~kinetics.bench.spec.DecodeSpec`: the grid's ``base`` spec
with the cell's model, context, batch size and ``topk_pages`` = budget tokens / page
size. Per cell: dense ms and its fraction of the copy bandwidth; the full block top-k
step of each variant (:data:`VARIANTS`, ``GridSpec.variants``: the fused one-kernel
step and the separate selection + attention kernels, the latter with the base spec's
top-k kernel, each on bf16 and on fp8 page means), the library default's
(:func:`kinetics.attention.decode.default_impl` on bf16 page means) as the cell's
block top-k ms; the speedup over dense, the byte roofline (dense bytes / block top-k
bytes) and the share of it reached; with the read curve, the one-launch floor
(:mod:`kinetics.bench.floors`) and the measured step against it. Dense is timed once
per (model, context, batch) and shared by the budgets. Every cell is checked first on
replica 0 (NaN-poisoned output fully written, selection vs ``torch.topk`` up to ties
for every variant, output vs the float32 reference for the bf16 variants where the
dense KV is at most ``GridSpec.check_kv_bytes``).

Timing: :func:`kinetics.bench.timing.time_graph` over CUDA graphs cycling
:func:`replicas_for` cache replicas (enough that the block top-k working set is
``l2_multiple`` times the L2 cache, at least 2, within ``memory_bytes``).

Pure parts (cells, replicas, table, JSON, figure) run anywhere; :func:`run_grid`
needs a CUDA GPU with triton and flashinfer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kinetics.bench.floors import ReadCurve, cell_limits, count_line
from kinetics.bench.spec import DecodeSpec
from kinetics.errors import InputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GRID_MODELS = ("qwen3-8b", "qwen3-32b")
GRID_CONTEXTS = (8192, 16384, 32768, 65536, 131072)
GRID_BATCHES = (1, 4, 16, 64, 256)
GRID_BUDGET_TOKENS = (1024, 2048)  # tokens attended per (request, KV head)
# block top-k variants timed per cell: (impl of build_blocktopk_decode, page-means dtype)
VARIANTS = {"fused": ("fused", "bf16"), "separate": ("separate", "bf16"),
            "fused-fp8": ("fused", "fp8"), "separate-fp8": ("separate", "fp8")}


@dataclass(frozen=True)
class GridSpec:
    """Which cells to run and how (sizes in tokens, requests and bytes).

    ``base``: the :class:`~kinetics.bench.spec.DecodeSpec` every cell starts from (its
    tp, page size, local pages, top-k kernel of the full step, dense kernel and seed;
    each cell sets the model, context, batch size, pages and replicas).
    """

    base: DecodeSpec = DecodeSpec()
    models: tuple[str, ...] = GRID_MODELS
    contexts: tuple[int, ...] = GRID_CONTEXTS
    batch_sizes: tuple[int, ...] = GRID_BATCHES
    budget_tokens: tuple[int, ...] = GRID_BUDGET_TOKENS
    repeats: int = 20
    memory_bytes: float = 48e9  # K/V of all replicas of one cell at most
    max_replicas: int = 8
    l2_multiple: float = 4.0
    check_kv_bytes: float = 2e9  # output vs reference only up to this dense KV size
    measure_floors: bool = True  # the read floors (kinetics.bench.floors) in the same run
    variants: tuple[str, ...] = tuple(VARIANTS)  # block top-k variants timed per cell

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "base"},
                "base": self.base.to_dict()}


@dataclass(frozen=True)
class GridCell:
    """One cell: a model shard, context, batch size and budget (pages)."""

    model: str
    context: int
    batch_size: int
    topk_pages: int

    def spec(self, grid: GridSpec, replicas: int = 1, variant: str | None = None
             ) -> DecodeSpec:
        """The cell's workload: ``grid.base`` with this cell's sizes (and, given a
        ``variant`` of :data:`VARIANTS`, its implementation and page-means dtype; else
        the library default on bf16 page means)."""
        impl, means = VARIANTS[variant] if variant is not None else ("auto", "bf16")
        return replace(grid.base, model=self.model, context=self.context,
                       batch_size=self.batch_size, topk_pages=self.topk_pages,
                       replicas=replicas, blocktopk_impl=impl, page_means_dtype=means)

    def step_bytes(self, grid: GridSpec, means: str = "bf16") -> tuple[float, float]:
        """(dense, block top-k) bytes one decode step moves (attention only; page means
        stored as ``means``)."""
        spec = replace(self.spec(grid), page_means_dtype=means)
        return spec.step_bytes("dense").total, spec.step_bytes("blocktopk").total


@dataclass(frozen=True)
class SkippedCell:
    """A cell not run, and why."""

    cell: GridCell
    reason: str


def grid_cells(spec: GridSpec) -> tuple[list[GridCell], list[SkippedCell]]:
    """The spec's cells in run order (model, context, batch, budget) and those skipped:
    a budget over the context, or K/V of two replicas over ``memory_bytes``. InputError
    on an unknown model or variant, a budget not a whole number of pages or a bad base
    spec."""
    unknown = set(spec.variants) - set(VARIANTS)
    if unknown or not spec.variants:
        raise InputError(f"unknown block top-k variants {sorted(unknown)} (choose one or "
                         f"more of {', '.join(VARIANTS)})")
    cells, skipped = [], []
    page_size = spec.base.page_size
    if spec.repeats < 1:
        raise InputError(f"--repeats must be >= 1, got {spec.repeats}")
    for budget in spec.budget_tokens:
        if budget < page_size or budget % page_size:
            raise InputError(f"budget {budget} tokens is not a whole number of pages of "
                             f"{page_size}")
    for model in spec.models:
        for context in spec.contexts:
            for batch in spec.batch_sizes:
                for budget in spec.budget_tokens:
                    cell = GridCell(model, context, batch, budget // page_size)
                    # every field but the budget checked even where it exceeds the context
                    replace(cell.spec(spec), context=max(context, budget)).validate()
                    if budget > context:
                        skipped.append(SkippedCell(cell, "budget exceeds the context"))
                        continue
                    dense, _ = cell.step_bytes(spec)
                    if 2 * dense > spec.memory_bytes:
                        skipped.append(SkippedCell(cell, f"K/V of 2 replicas ({2 * dense / 1e9:.1f}"
                                                         f" GB) over {spec.memory_bytes / 1e9:.0f} GB"))
                        continue
                    cells.append(cell)
    return cells, skipped


def replicas_for(dense_bytes: float, sparse_bytes: float, spec: GridSpec, l2_bytes: float
                 ) -> int:
    """Cache replicas cycled in a cell's graphs: enough for the block top-k working set to
    reach ``l2_multiple`` x the L2, at least 2, at most ``max_replicas`` and what
    ``memory_bytes`` holds."""
    want = math.ceil(spec.l2_multiple * l2_bytes / sparse_bytes)
    fit = int(spec.memory_bytes // dense_bytes)
    return max(2, min(want, spec.max_replicas, fit))


@dataclass(frozen=True)
class CellResult:
    """Measured numbers of one cell (ms per step, bytes per step, fractions)."""

    cell: GridCell
    replicas: int
    dense_bytes: float
    blocktopk_bytes: float
    dense_ms: float
    dense_fraction_of_copy: float
    impl: str  # the variant the library's default (impl="auto") runs
    step_ms: dict[str, float]  # full block top-k step per variant (VARIANTS)
    blocktopk_ms: float  # step_ms[impl]
    checks_passed: bool
    check_notes: tuple[str, ...] = ()
    fp8_blocktopk_bytes: float | None = None  # the step's bytes with fp8 page means

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.blocktopk_ms

    @property
    def byte_roofline(self) -> float:
        return self.dense_bytes / self.blocktopk_bytes

    @property
    def share_of_roofline(self) -> float:
        return self.speedup / self.byte_roofline

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(asdict(self.cell), speedup=self.speedup, byte_roofline=self.byte_roofline,
                   share_of_roofline=self.share_of_roofline)
        del out["cell"]
        out["check_notes"] = list(self.check_notes)
        return out


@dataclass
class GridResult:
    """A grid run: device, date, library versions, copy bandwidth (GB/s), spec, results,
    skips and (with ``measure_floors``) the read curve of the same run."""

    device: str
    date: str
    versions: dict[str, str]
    copy_gbps: float
    spec: GridSpec
    cells: list[CellResult] = field(default_factory=list)
    skipped: list[SkippedCell] = field(default_factory=list)
    read_curve: ReadCurve | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "grid", "device": self.device, "date": self.date,
                "versions": self.versions, "copy_gbps": self.copy_gbps,
                "spec": self.spec.to_dict(), "cells": [c.to_dict() for c in self.cells],
                "skipped": [{**asdict(s.cell), "reason": s.reason} for s in self.skipped],
                "read_curve": self.read_curve.to_dict() if self.read_curve else None}


def format_grid(result: GridResult) -> str:
    """The grid as a plain-text table: per cell the default block top-k step (``impl``)
    and each variant's, and with the read curve the one-launch floor (``floor ms``), the
    measured step against it (``of floor``: floor / measured) and the share of the byte
    roofline it allows (``@floor``; ``-`` without a read curve); skipped cells after it,
    then (with the read curve) how many cells meet 75% of the roofline and how many the
    floors allow."""
    v = result.versions
    lines = [f"{result.device}  {result.date}  copy {result.copy_gbps:.0f} GB/s  "
             + "  ".join(f"{k} {v[k]}" for k in sorted(v)),
             f"{'model':<10} {'ctx':>6} {'batch':>5} {'pages':>5} {'KV MB':>7} "
             f"{'dense ms':>9} {'of copy':>7} {'btk ms':>8} {'impl':>8} {'fused':>7} "
             f"{'separate':>8} {'fp8':>7} {'sep fp8':>7} {'speedup':>7} {'roofline':>8} "
             f"{'share':>6} {'floor ms':>8} {'of floor':>8} {'@floor':>6} ok"]
    limits = (cell_limits(result.to_dict(), result.read_curve)
              if result.read_curve else [None] * len(result.cells))
    for r, limit in zip(result.cells, limits, strict=True):
        c, step = r.cell, r.step_ms
        floor = (f"{limit.one_launch_floor_ms:>8.4f} {limit.of_one_launch_floor:>8.0%} "
                 f"{limit.one_launch_floor_share:>6.0%}" if limit else
                 f"{'-':>8} {'-':>8} {'-':>6}")
        lines.append(
            f"{c.model:<10} {c.context:>6} {c.batch_size:>5} {c.topk_pages:>5} "
            f"{r.dense_bytes / 1e6:>7.0f} {r.dense_ms:>9.4f} {r.dense_fraction_of_copy:>7.1%} "
            f"{r.blocktopk_ms:>8.4f} {r.impl:>8} {step.get('fused', math.nan):>7.4f} "
            f"{step.get('separate', math.nan):>8.4f} {step.get('fused-fp8', math.nan):>7.4f} "
            f"{step.get('separate-fp8', math.nan):>7.4f} {r.speedup:>6.2f}x "
            f"{r.byte_roofline:>7.2f}x {r.share_of_roofline:>6.0%} {floor} "
            f"{'ok' if r.checks_passed else 'FAIL ' + '; '.join(r.check_notes)}")
    for s in result.skipped:
        c = s.cell
        lines.append(f"skipped: {c.model} context {c.context} batch {c.batch_size} "
                     f"{c.topk_pages} pages: {s.reason}")
    if result.read_curve:
        lines.append(count_line([x for x in limits if x.dense_ms >= 0.1]))
    return "\n".join(lines)


def grid_figure(record: dict[str, Any]) -> Figure:
    """Speedup (solid) and byte roofline (dashed) vs context, one colour per batch size,
    one panel per (model, budget), from a grid record (:meth:`GridResult.to_dict`).
    A ``matplotlib.figure.Figure`` (no pyplot state); the caller saves it."""
    from matplotlib.figure import Figure

    spec = record["spec"]
    base = spec.get("base", spec)  # flat in records made before the grid took a spec
    cells = record["cells"]
    panels = sorted({(c["model"], c["topk_pages"]) for c in cells})
    fig = Figure(figsize=(4.5 * max(len(panels), 1), 4))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False, sharey=True)
    batches = sorted({c["batch_size"] for c in cells})
    colours = {b: f"C{i}" for i, b in enumerate(batches)}
    for ax, (model, pages) in zip(axes[0], panels, strict=False):
        for b in batches:
            rows = sorted((c for c in cells if (c["model"], c["topk_pages"],
                                                c["batch_size"]) == (model, pages, b)),
                          key=lambda c: c["context"])
            if not rows:
                continue
            x = [c["context"] for c in rows]
            ax.plot(x, [c["speedup"] for c in rows], "o-", color=colours[b], label=f"batch {b}")
            ax.plot(x, [c["byte_roofline"] for c in rows], "--", color=colours[b], alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("context (tokens)")
        ax.set_title(f"{model} tp{base['tp']}, {pages * base['page_size']} tokens")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("block top-k speedup over dense (dashed: byte roofline)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{record['device']}, {record['date']}")
    fig.tight_layout()
    return fig


def run_grid(spec: GridSpec = GridSpec(), progress: Callable[[str], None] = print,
             deadline_s: float | None = None) -> GridResult:
    """Run every cell of ``spec`` on this GPU, the (model, context, batch) groups in
    order of dense K/V size; cells not reached within ``deadline_s`` seconds are listed
    as skipped. InputError where no GPU benchmark is possible."""
    import torch

    from kinetics.bench.floors import measure_read_curve
    from kinetics.bench.spec import gpu_available
    from kinetics.bench.timing import copy_bandwidth, environment

    ok, why = gpu_available()
    if not ok:
        raise InputError(f"no GPU benchmark possible: {why}")
    cells, skipped = grid_cells(spec)
    env = environment()
    result = GridResult(env["device"], env["date"], env["versions"], copy_bandwidth(), spec,
                        skipped=skipped)
    if spec.measure_floors:
        result.read_curve = measure_read_curve(progress=progress)
    start = time.monotonic()
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    groups: dict[tuple, list[GridCell]] = {}
    for cell in cells:
        groups.setdefault((cell.model, cell.context, cell.batch_size), []).append(cell)
    # cheapest first (dense K/V bytes), so a time budget cuts the costliest cells
    for group in sorted(groups.values(), key=lambda g: (g[0].step_bytes(spec)[0], g[0].model)):
        if deadline_s is not None and time.monotonic() - start > deadline_s:
            result.skipped += [SkippedCell(c, "not reached within the time budget")
                               for c in group]
            continue
        for r in _run_group(group, spec, l2, result.copy_gbps):
            result.cells.append(r)
            c = r.cell
            progress(f"{c.model} ctx {c.context} batch {c.batch_size} pages {c.topk_pages}: "
                     f"dense {r.dense_ms:.4f} ms, block top-k {r.blocktopk_ms:.4f} ms, "
                     f"{r.speedup:.2f}x of {r.byte_roofline:.2f}x"
                     f"{'' if r.checks_passed else ' CHECK FAILED'}")
        torch.cuda.empty_cache()
    return result


def _run_group(group: list[GridCell], grid: GridSpec, l2: float, copy_gbps: float
               ) -> list[CellResult]:
    """The cells of one (model, context, batch): one workload, dense timed once."""
    from kinetics.bench.layer import check_method, time_steps
    from kinetics.bench.spec import build_workload, make_decoder

    dense_bytes = group[0].step_bytes(grid)[0]
    reps = max(replicas_for(dense_bytes, c.step_bytes(grid)[1], grid, l2) for c in group)
    spec = group[0].spec(grid, reps)
    w = build_workload(spec)
    compare = dense_bytes <= grid.check_kv_bytes
    decoders = [make_decoder(spec, "dense", c, w.q_heads) for c in w.caches]
    dense_check = check_method("dense", decoders[0], w, spec, compare_output=compare)
    dense_ms = time_steps(w, decoders, grid.repeats).ms
    del decoders
    return [_run_blocktopk(cell, cell.spec(grid, reps), w, grid, dense_ms, dense_check,
                           copy_gbps, compare) for cell in group]


def _variant_workload(w, means: str):
    """``w`` with its caches' page means stored as ``means`` (K/V shared)."""
    from kinetics.attention.cache import page_means_dtype

    if means == "bf16":
        return w
    return replace(w, caches=[c.with_page_means_dtype(page_means_dtype(means))
                              for c in w.caches])


def _run_blocktopk(cell: GridCell, spec: DecodeSpec, w, grid: GridSpec, dense_ms: float,
                   dense_check, copy_gbps: float, compare: bool) -> CellResult:
    """One budget of a group: every variant's full step (``grid.variants``), each checked
    first; the cell's block top-k ms is the library default's
    (:func:`kinetics.attention.decode.default_impl`)."""
    from kinetics.attention.decode import default_impl
    from kinetics.bench.layer import check_method, time_steps
    from kinetics.bench.spec import make_decoder

    dense_bytes, sparse_bytes = cell.step_bytes(grid)
    c0 = w.caches[0]
    chosen = default_impl(c0.batch_size * c0.num_kv_heads, c0.page_table.shape[1],
                          cell.topk_pages, w.q_heads // w.kv_heads)
    notes = [] if dense_check.passed else [f"dense rel err {dense_check.rel_err:.2e}"]
    step: dict[str, float] = {}
    workloads = {"bf16": w}
    for variant in grid.variants:
        vspec = cell.spec(grid, spec.replicas, variant)
        means = vspec.page_means_dtype
        if means not in workloads:
            workloads[means] = _variant_workload(w, means)
        vw = workloads[means]
        decoders = [make_decoder(vspec, "blocktopk", c, w.q_heads) for c in vw.caches]
        check = check_method("blocktopk", decoders[0], vw, vspec,
                             compare_output=compare and means == "bf16")
        if not check.passed:
            notes.append(f"{variant}: written={check.all_written} rel err "
                         f"{check.rel_err:.2e} selection ok={check.selection.passed}")
        step[variant] = time_steps(vw, decoders, grid.repeats).ms
        del decoders
    return CellResult(cell, spec.replicas, dense_bytes, sparse_bytes, dense_ms,
                      dense_bytes / (dense_ms * 1e-3) / 1e9 / copy_gbps, chosen, step,
                      step.get(chosen, math.nan), not notes, tuple(notes),
                      cell.step_bytes(grid, "fp8")[1])
