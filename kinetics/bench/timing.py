"""GPU timing shared by the benchmarks and the GPU tests (needs torch; CUDA for graphs).

* :func:`capture_graph`: warm a callable up on a side stream, capture it in a CUDA graph.
* :func:`time_graph`: the one CUDA-graph timer (median ms per step over replays);
  :func:`time_replays` times replays of a graph captured elsewhere (ranks in step).
* :class:`Clock`: timestamps, CUDA events on a GPU or ``perf_counter`` on CPU, for
  loops that cannot be one graph (the tensor-parallel layer, whose attention is eager).
* :func:`copy_bandwidth`: device-to-device copy GB/s, the achievable-bandwidth roofline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GraphTiming:
    """Milliseconds per step over the timed replays: median, minimum and 90th percentile."""

    ms: float
    ms_min: float
    ms_p90: float


def capture_graph(fn: Callable[[], Any], warmup: int = 3):
    """Run ``fn`` ``warmup`` times on a side stream (JIT, autotuning, allocations), then
    capture one call in a ``torch.cuda.CUDAGraph`` and return it (``graph.replay()``)."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def time_replays(replay: Callable[[], Any], steps: int, repeats: int, warmup: int = 10,
                 barrier: Callable[[], None] | None = None) -> GraphTiming:
    """Call ``replay()`` (``steps`` decode steps each) ``warmup`` times untimed, then
    ``repeats`` times each between CUDA events; ms per step. ``barrier`` (the ranks of a
    process group) runs after the warm-up, so all ranks start the timed replays together."""
    import torch

    for _ in range(warmup):
        replay()
    torch.cuda.synchronize()
    if barrier is not None:
        barrier()
    events = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        replay()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    per_step = sorted(s.elapsed_time(e) / steps for s, e in events)
    return GraphTiming(ms=statistics.median(per_step), ms_min=per_step[0],
                       ms_p90=per_step[int(0.9 * (len(per_step) - 1))])


def time_graph(fn: Callable[[], Any], steps: int, repeats: int, warmup: int = 10
               ) -> GraphTiming:
    """Capture ``fn`` (``steps`` decode steps) in a CUDA graph and time its replays
    (:func:`time_replays`); ms per step."""
    graph = capture_graph(fn)
    timing = time_replays(graph.replay, steps, repeats, warmup)
    del graph
    return timing


class Clock:
    """Timestamps: CUDA events on a GPU (recorded on the current stream), else perf_counter."""

    def __init__(self, device) -> None:
        import torch

        self.torch, self.device = torch, device
        self.cuda = device.type == "cuda"

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


@dataclass
class TimedCell:
    """What a timed decode step ran: the configuration fields every timing record shares.

    Attributes:
        model, method, impl: preset, attention ('dense' / 'blocktopk'), implementation.
        batch, context, tp: requests, cached tokens per request (tokens), tensor-parallel degree.
    """

    model: str
    method: str
    impl: str
    batch: int
    context: int
    tp: int
