"""How far each grid cell is from what the GPU can do at all: read floors.

The byte roofline of a cell (dense bytes / block top-k bytes) assumes every byte
moves at the large-copy rate. Small steps cannot: a kernel that only reads S bytes
takes longer per byte the smaller S is (launch, ramp-up, tail), and the block top-k
step is a chain of dependent kernels (scoring, top-k, attention, merge). A
:class:`ReadCurve` holds what a pure streaming read kernel measured on the device
(:func:`measure_read_curve`, run by ``kinetics bench --grid`` beside the cells: ms
to read S bytes, and one empty launch inside a CUDA graph); :func:`cell_limits`
turns it into, per grid cell, two *floors* and the speedup and share of the byte
roofline each would give against the measured dense step:

* the four-kernel step (scoring, top-k, attention, merge): its selection bytes and its
  attention bytes each read at the measured rate, plus two empty launches for the
  top-k and the merge (:func:`blocktopk_floor_ms`);
* the one-launch step (the fused kernel): selection and attention bytes as one
  dependent read at the measured rate, plus one launch (:func:`one_launch_floor_ms`);
* the dependent one-launch step: the selection bytes read, then the attention bytes
  (a row's pages are known only once all its page means are scored, and while rows
  are no more than programs every row scores at once, then attends at once), plus
  one launch (:func:`dependent_floor_ms`): the four-kernel floor less one launch.

A target above a cell's floor share cannot be met by faster kernels of that
structure. Times in ms, sizes in bytes.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kinetics.bench.spec import DecodeSpec

READ_SIZES = tuple(0.5e6 * 2 ** (i / 2) for i in range(25))  # bytes: 0.5 MB to 2 GB
L2_SET_BYTES = 300e6  # each size cycles through copies adding up to more than this
MAX_COPIES = 1024  # (so from 0.3 MB up every read comes from HBM)


@dataclass(frozen=True)
class ReadCurve:
    """Measured pure-read times: ``ms[i]`` to read ``sizes[i]`` bytes (sizes ascending),
    and ``launch_ms``, one empty kernel inside a CUDA graph."""

    sizes: tuple[float, ...]
    ms: tuple[float, ...]
    launch_ms: float

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or len(self.sizes) != len(self.ms):
            raise ValueError("a read curve needs at least two (size, ms) points")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:], strict=False)):
            raise ValueError("read-curve sizes must be strictly ascending")
        if self.sizes[0] <= 0 or min(self.ms) <= 0 or self.launch_ms < 0:
            raise ValueError("read-curve sizes and times must be positive")

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ReadCurve:
        """From :meth:`to_dict`'s form, or from the JSON of
        ``benchmarks/explore/explore_floors.py`` (``read`` rows of ``mb``, ``read_ms``)."""
        if "read" in record:
            rows = sorted(record["read"], key=lambda r: r["mb"])
            return cls(tuple(r["mb"] * 1e6 for r in rows), tuple(r["read_ms"] for r in rows),
                       float(record["empty_launch_ms"]))
        return cls(tuple(map(float, record["sizes"])), tuple(map(float, record["ms"])),
                   float(record["launch_ms"]))

    def to_dict(self) -> dict[str, Any]:
        return {"sizes": list(self.sizes), "ms": list(self.ms), "launch_ms": self.launch_ms}

    def envelope(self) -> tuple[float, ...]:
        """Times made non-decreasing in size: reading S bytes is taken to cost no more than
        the fastest measured read of at least S bytes."""
        out = list(self.ms)
        for i in range(len(out) - 2, -1, -1):
            out[i] = min(out[i], out[i + 1])
        return tuple(out)

    def floor_ms(self, nbytes: float) -> float:
        """Floor to read ``nbytes``: the envelope interpolated in log-log; below the
        smallest size its time, beyond the largest its rate."""
        env = self.envelope()
        if nbytes <= self.sizes[0]:
            return env[0]
        if nbytes >= self.sizes[-1]:
            return env[-1] * nbytes / self.sizes[-1]
        i = bisect.bisect_right(self.sizes, nbytes)
        x0, x1 = math.log(self.sizes[i - 1]), math.log(self.sizes[i])
        y0, y1 = math.log(env[i - 1]), math.log(env[i])
        return math.exp(y0 + (y1 - y0) * (math.log(nbytes) - x0) / (x1 - x0))


@dataclass(frozen=True)
class CellLimit:
    """One grid cell against its floor (ms; shares of the byte roofline)."""

    model: str
    context: int
    batch_size: int
    budget_tokens: int
    dense_ms: float
    blocktopk_ms: float
    floor_ms: float
    byte_roofline: float
    one_launch_floor_ms: float = math.nan
    dependent_floor_ms: float = math.nan

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.blocktopk_ms

    @property
    def share(self) -> float:
        """Measured speedup / byte roofline."""
        return self.speedup / self.byte_roofline

    @property
    def floor_share(self) -> float:
        """Speedup at the floor / byte roofline: the most this step structure can reach."""
        return self.dense_ms / self.floor_ms / self.byte_roofline

    @property
    def of_floor(self) -> float:
        """Floor ms / measured ms: how close the measured step is to its floor."""
        return self.floor_ms / self.blocktopk_ms

    @property
    def one_launch_floor_share(self) -> float:
        """Speedup at the one-launch floor / byte roofline."""
        return self.dense_ms / self.one_launch_floor_ms / self.byte_roofline

    @property
    def of_one_launch_floor(self) -> float:
        """One-launch floor ms / measured ms."""
        return self.one_launch_floor_ms / self.blocktopk_ms

    @property
    def dependent_floor_share(self) -> float:
        """Speedup at the dependent one-launch floor / byte roofline."""
        return self.dense_ms / self.dependent_floor_ms / self.byte_roofline

    @property
    def of_dependent_floor(self) -> float:
        """Dependent one-launch floor ms / measured ms."""
        return self.dependent_floor_ms / self.blocktopk_ms


def blocktopk_floor_ms(selection_bytes: float, attention_bytes: float, curve: ReadCurve,
                       launches: int = 2) -> float:
    """Floor of the four-kernel step: both reads at the curve, ``launches`` empty ones."""
    return (curve.floor_ms(selection_bytes) + curve.floor_ms(attention_bytes)
            + launches * curve.launch_ms)


def one_launch_floor_ms(selection_bytes: float, attention_bytes: float, curve: ReadCurve
                        ) -> float:
    """Floor of the one-launch step: selection and attention bytes read as one stream at
    the curve, plus one launch."""
    return curve.floor_ms(selection_bytes + attention_bytes) + curve.launch_ms


def dependent_floor_ms(selection_bytes: float, attention_bytes: float, curve: ReadCurve
                       ) -> float:
    """Floor of the one-launch step whose attention reads wait for its selection reads:
    the two reads one after the other at the curve, plus one launch."""
    return blocktopk_floor_ms(selection_bytes, attention_bytes, curve, launches=1)


def spec_floor_ms(spec: DecodeSpec, curve: ReadCurve, launches: int = 2) -> float:
    """Floor of the four-kernel block top-k attention step of ``spec``:
    :func:`blocktopk_floor_ms` of its selection and attention bytes
    (:meth:`DecodeSpec.step_bytes <kinetics.bench.spec.DecodeSpec.step_bytes>`)."""
    nbytes = spec.step_bytes("blocktopk")
    return blocktopk_floor_ms(nbytes.selection, nbytes.attention, curve, launches)


def spec_one_launch_floor_ms(spec: DecodeSpec, curve: ReadCurve) -> float:
    """Floor of the one-launch (fused) block top-k attention step of ``spec``:
    :func:`one_launch_floor_ms` of its selection and attention bytes."""
    nbytes = spec.step_bytes("blocktopk")
    return one_launch_floor_ms(nbytes.selection, nbytes.attention, curve)


def cell_limits(grid_record: dict[str, Any], curve: ReadCurve) -> list[CellLimit]:
    """A :class:`CellLimit` per cell of a ``kinetics bench --grid`` JSON record, each
    cell's bytes from its :class:`~kinetics.bench.spec.DecodeSpec` (the record's page
    size, tp and local pages; flat in records made before the grid took a spec)."""
    spec = grid_record.get("spec", {})
    base = {k: v for k, v in spec.get("base", spec).items()
            if k in ("page_size", "tp", "local_pages")}
    out = []
    for c in grid_record["cells"]:
        cell = DecodeSpec(model=c["model"], context=c["context"], batch_size=c["batch_size"],
                          topk_pages=c["topk_pages"], **base)
        parts = cell.step_bytes("blocktopk")
        sel, att = parts.selection, parts.attention
        out.append(CellLimit(cell.model_name, cell.context, cell.batch_size,
                             cell.budget_tokens, c["dense_ms"], c["blocktopk_ms"],
                             blocktopk_floor_ms(sel, att, curve),
                             c["dense_bytes"] / c["blocktopk_bytes"],
                             one_launch_floor_ms(sel, att, curve),
                             dependent_floor_ms(sel, att, curve)))
    return out


def format_limits(limits: Sequence[CellLimit], min_dense_ms: float = 0.1,
                  target_share: float = 0.75) -> str:
    """Markdown table of the cells whose dense step takes at least ``min_dense_ms`` (the
    four-kernel, one-launch and dependent one-launch floors, each with the share of the
    roofline it allows), and a line counting those that meet ``target_share`` and whose
    floors allow it."""
    rows = [x for x in limits if x.dense_ms >= min_dense_ms]
    lines = ["| model | context | batch | tokens | block top-k ms | 4-kernel floor ms | "
             "1-launch floor ms | of 1-launch floor | dependent floor ms | of dependent "
             "floor | share (measured) | share at 4-kernel floor | share at 1-launch floor "
             "| share at dependent floor |", "|---|---|---|---|---|---|---|---|---|---|---|---|"
             "---|---|"]
    for x in rows:
        lines.append(f"| {x.model} | {x.context // 1024}k | {x.batch_size} | "
                     f"{x.budget_tokens:,} | {x.blocktopk_ms:.4f} | {x.floor_ms:.4f} | "
                     f"{x.one_launch_floor_ms:.4f} | {x.of_one_launch_floor:.0%} | "
                     f"{x.dependent_floor_ms:.4f} | {x.of_dependent_floor:.0%} | "
                     f"{x.share:.0%} | {x.floor_share:.0%} | {x.one_launch_floor_share:.0%} | "
                     f"{x.dependent_floor_share:.0%} |")
    lines += ["", count_line(rows, min_dense_ms, target_share)]
    return "\n".join(lines)


def count_line(rows: Sequence[CellLimit], min_dense_ms: float = 0.1,
               target_share: float = 0.75) -> str:
    """One line: of ``rows`` (cells with dense >= ``min_dense_ms``), how many meet
    ``target_share`` of the byte roofline, and how many each floor allows."""
    met = sum(x.share >= target_share for x in rows)
    four = sum(x.floor_share >= target_share for x in rows)
    one = sum(x.one_launch_floor_share >= target_share for x in rows)
    dep = sum(x.dependent_floor_share >= target_share for x in rows)
    return (f"{len(rows)} cells with dense >= {min_dense_ms} ms: {met} at >= "
            f"{target_share:.0%} of the byte roofline measured; the four-kernel floor allows "
            f"it in {four}, the one-launch floor in {one}, the dependent one-launch floor "
            f"in {dep}.")


def _read_ms(nbytes: float, sms: int) -> float:
    """Median of three timings of the fastest read launch for ``nbytes`` (ms)."""
    import torch
    import triton

    from kinetics.bench import _read_kernels as k
    from kinetics.bench.timing import time_graph

    copies = max(2, min(MAX_COPIES, int(L2_SET_BYTES // nbytes) + 1))
    bufs = [torch.ones(int(nbytes) // 2, dtype=torch.bfloat16, device="cuda")
            for _ in range(copies)]
    n = bufs[0].numel()
    best: tuple[float, Any] = (math.inf, None)
    for per_sm, block in itertools.product((2, 4, 8), (4096, 16384)):
        programs = max(1, min(sms * per_sm, triton.cdiv(n, block)))
        steps = triton.cdiv(triton.cdiv(n, block), programs)
        out = torch.empty(programs, dtype=torch.float32, device="cuda")

        def run(programs=programs, steps=steps, block=block, out=out, bufs=bufs, n=n):
            for b in bufs:
                k.read_kernel[(programs,)](b, out, n, steps, BLOCK=block, num_warps=8)
        ms = time_graph(run, copies, repeats=20, warmup=3).ms
        if ms < best[0]:
            best = (ms, run)
    again = [time_graph(best[1], copies, repeats=20, warmup=3).ms for _ in range(2)]
    return sorted([best[0], *again])[1]


def measure_read_curve(sizes: Sequence[float] = READ_SIZES,
                       progress: Callable[[str], None] | None = None) -> ReadCurve:
    """Time a pure streaming read of each size (bytes) on this GPU (needs CUDA and
    triton): the fastest of 2/4/8 programs per SM x 8/32 KB blocks, then re-timed twice,
    the median of the three kept; buffers cycle through copies past the L2 cache.
    Plus one empty launch inside a CUDA graph."""
    import torch

    from kinetics.bench import _read_kernels as k
    from kinetics.bench.timing import time_graph

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    times = []
    for nbytes in sizes:
        times.append(_read_ms(nbytes, sms))
        torch.cuda.empty_cache()
        if progress is not None:
            progress(f"read floor {nbytes / 1e6:8.1f} MB: {times[-1] * 1e3:8.2f} us")
    tiny = torch.empty(64, dtype=torch.float32, device="cuda")
    launch = time_graph(lambda: [k.empty_kernel[(64,)](tiny) for _ in range(64)], 64,
                        repeats=20, warmup=3).ms
    return ReadCurve(tuple(float(s) for s in sizes), tuple(times), launch)
