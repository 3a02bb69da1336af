"""GPU timing shared by the benchmarks and the GPU tests (needs torch; CUDA for graphs).

* :func:`time_graph`: the one timer of a decode step: capture ``fn`` in a CUDA graph
  (:func:`kinetics.model.capture.capture_graph`) and time its replays;
  :func:`time_replays` times replays of any callable (a graph captured elsewhere, or an
  eager step on the CPU) with a :class:`Clock`, median ms per step, ranks in step.
* :class:`Clock`: timestamps, CUDA events on a GPU or ``perf_counter`` on the CPU.
* :func:`copy_bandwidth`: device-to-device copy GB/s, the achievable-bandwidth roofline.
* :func:`environment`: device, date and library versions for a run record.
"""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kinetics.model.capture import capture_graph


@dataclass(frozen=True)
class GraphTiming:
    """Milliseconds per step over the timed replays: median, minimum and 90th percentile."""

    ms: float
    ms_min: float
    ms_p90: float


class Clock:
    """Timestamps: CUDA events on a GPU (recorded on the current stream), else perf_counter."""

    def __init__(self, device="cuda") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = self.torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def elapsed_ms(self, start, end) -> float:
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3


def time_replays(replay: Callable[[], Any], steps: int, repeats: int, warmup: int = 10,
                 barrier: Callable[[], None] | None = None, device="cuda") -> GraphTiming:
    """Call ``replay()`` (``steps`` decode steps each) ``warmup`` times untimed, then
    ``repeats`` times each between two :class:`Clock` marks on ``device``; ms per step.
    ``barrier`` (the ranks of a process group) runs after the warm-up, so all ranks
    start the timed replays together."""
    clock = Clock(device)
    for _ in range(warmup):
        replay()
    clock.sync()
    if barrier is not None:
        barrier()
    marks = []
    for _ in range(repeats):
        start = clock.mark()
        replay()
        marks.append((start, clock.mark()))
    clock.sync()
    per_step = sorted(clock.elapsed_ms(s, e) / steps for s, e in marks)
    return GraphTiming(ms=statistics.median(per_step), ms_min=per_step[0],
                       ms_p90=per_step[int(0.9 * (len(per_step) - 1))])


def time_graph(fn: Callable[[], Any], steps: int, repeats: int, warmup: int = 10,
               barrier: Callable[[], None] | None = None) -> GraphTiming:
    """Capture ``fn`` (``steps`` decode steps) in a CUDA graph and time its replays
    (:func:`time_replays`); ms per step."""
    graph = capture_graph(fn)
    timing = time_replays(graph.replay, steps, repeats, warmup, barrier)
    del graph
    return timing


def copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth, GB/s (bytes read + written), median of repeats."""
    import torch

    src = torch.randn(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    clock = Clock(src.device)
    times = []
    for _ in range(repeats):
        start = clock.mark()
        dst.copy_(src)
        end = clock.mark()
        end.synchronize()
        times.append(clock.elapsed_ms(start, end))
    del src, dst
    return 2 * nbytes / (statistics.median(times) * 1e-3) / 1e9


def environment() -> dict[str, Any]:
    """The run's environment as bench records store it: ``device`` (the CUDA device's
    name, or 'cpu'), ``date`` (UTC, to the minute: ``2026-01-31 12:00 UTC``) and
    ``versions`` of torch, triton and flashinfer (those installed). A view of
    :func:`kinetics.provenance.provenance` (one source of these facts), with torch
    imported first so that the device is seen."""
    import torch  # noqa: F401  (provenance reads the device of an imported torch only)

    from kinetics.provenance import provenance

    record = provenance()
    date = _dt.datetime.strptime(record.date, "%Y-%m-%dT%H:%M:%SZ")
    return {"device": record.device, "date": date.strftime("%Y-%m-%d %H:%M UTC"),
            "versions": {name: record.versions[name] for name in ("torch", "triton", "flashinfer")
                         if record.versions.get(name) is not None}}
