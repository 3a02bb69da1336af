"""Tensor-parallel decode benchmark of one decoder layer over torch.distributed.

Launch one process per GPU with torchrun; every process calls :func:`run_tp_bench`
with the same arguments, and rank 0 gets the result (other ranks get None)::

    torchrun --nproc-per-node 4 -m kinetics bench --distributed --tp 4 ...
    torchrun --nproc-per-node 4 -m kinetics.bench.tp --model qwen3-8b --tp 4 \\
        --method blocktopk --paged --context 32768 --batch-size 32   # without the CLI

On GPUs the process group uses NCCL (with ``NCCL_NVLS_ENABLE=0``: NVLink multicast
off), on CPU gloo. Each rank builds its :class:`~kinetics.model.layer.ShardedDecoderLayer`
shard and its own KV cache for its local KV heads (from ``attend_factory``), so the
paged cache and block top-k selection are local to each rank, as in vLLM.

What is timed (see docs/tensor-parallel.md):

* ``step_ms``: one decode step of one layer at ``batch_size`` requests (mean over
  ``steps`` after ``warmup``; max over ranks), CUDA events on GPU, perf_counter on
  CPU, ranks aligned by a barrier before the timed loop.
* ``comm_ms``: time inside the two all-reduces per step (events around each call,
  so it includes waiting for the slowest rank); ``comm_share = comm_ms / step_ms``.
* ``nocomm_step_ms``: the same loop with the all-reduces skipped; ``step_ms -
  nocomm_step_ms`` is a second estimate of what communication costs.
* ``tp1_step_ms``: the unsharded layer (tp 1) on rank 0's GPU alone, in the same
  run (the other ranks wait at a barrier); ``speedup = tp1_step_ms / step_ms`` and
  ``scaling_efficiency = speedup / tp``.

That loop (:func:`run_tp_bench`) runs attention eagerly between CUDA graphs (or all
eager, and on CPU over gloo). On GPUs, :func:`tp_layer_timing` records the WHOLE
step (non-attention work, paged attention, both NCCL all-reduces) as one CUDA graph
and times ``inner`` steps per replay; it reports the step, the step without
all-reduces, the two all-reduces alone (the in-run NCCL test), tp 1 on rank 0, and
the piecewise scheme's GPU vs host time per step, as a :class:`TpLayerTiming`. At
small per-step GPU time the piecewise loop is bound by the host's launches, and the
all-reduce events then also time the wait for the other rank: docs/tensor-parallel.md.

torch is imported lazily, so ``import kinetics.bench.tp`` needs no torch.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kinetics.bench.timing import Clock, TimedCell, capture_graph, time_replays
from kinetics.errors import InputError
from kinetics.model.parallel import gather_rows, init_distributed, shutdown_distributed
from kinetics.models import ModelSpec, get_model

_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
           "half": "float16", "float32": "float32", "fp32": "float32", "float": "float32"}

def parse_dtype(dtype: Any):
    """'bfloat16' / 'bf16' / 'float16' / 'fp16' / 'float32' / 'fp32' (or a torch.dtype)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPES.get(str(dtype).lower())
    if name is None:
        raise InputError(f"unknown dtype '{dtype}' (choose from {', '.join(_DTYPES)})")
    return getattr(torch, name)


class _CommTimer:
    """start()/stop() around each all-reduce; total() in ms after the clock syncs."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.marks = clock, []

    def start(self) -> None:
        self.marks.append([self.clock.mark(), None])

    def stop(self) -> None:
        self.marks[-1][1] = self.clock.mark()

    def total_ms(self) -> float:
        return sum(self.clock.elapsed_ms(a, b) for a, b in self.marks)


def _call_factory(factory: Callable, lq: int, lkv: int, head_dim: int, batch: int,
                  context: int, device, dtype, extras: dict[str, Any]):
    """factory(lq, lkv, head_dim, batch, context, device, dtype, **accepted extras)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in extras.items() if takes_all or k in params}
    return factory(lq, lkv, head_dim, batch, context, device, dtype, **kwargs)


def paged_attend_factory(method: str, page_size: int, topk_pages: int, *, local_pages: int = 1,
                         use_tensor_cores: bool = True, seed: int = 0) -> Callable:
    """An ``attend_factory`` over kinetics.attention's paged cache and GPU decoders.

    Each rank gets a :class:`kinetics.attention.cache.PagedKVCache` of ``context``
    random tokens for its own KV heads (pages in random order; seed offset by the
    rank's first KV head) and a ``FlashinferDenseDecode`` (method 'dense') or
    ``build_blocktopk_decode`` (method 'blocktopk': page selection and Triton sparse
    attention over this rank's KV heads only). As in ``kinetics bench``, the attend
    writes each new token over the last cached slot, so the KV length stays
    ``context`` and the planned kernels stay valid for any number of steps.
    Needs CUDA, triton and flashinfer.
    """
    if method not in ("dense", "blocktopk"):
        raise InputError(f"unknown method '{method}' (choose from dense, blocktopk)")

    def factory(local_q_heads: int, local_kv_heads: int, head_dim: int, batch_size: int,
                context: int, device, dtype, *, kv_head_start: int = 0):
        from kinetics.bench.decode import random_paged_attend

        return random_paged_attend(method, batch_size, local_q_heads, local_kv_heads,
                                   head_dim, context, page_size, topk_pages, dtype=dtype,
                                   device=device, seed=seed + kv_head_start,
                                   local_pages=local_pages,
                                   use_tensor_cores=use_tensor_cores)

    factory.label = f"paged {method}"  # type: ignore[attr-defined]
    return factory


def _time_layer(layer, attend, hidden, context: int, steps: int, warmup: int, clock: Clock,
                barrier: Callable[[], None], time_comm: bool, cuda_graphs: bool) -> dict[str, Any]:
    """Warm up, barrier, then time `steps` decode steps; per-rank numbers in ms."""
    import torch

    from kinetics.model.layer import GraphedDecodeStep

    batch = hidden.shape[0]

    def positions(i: int):
        return torch.full((batch,), context + i, dtype=torch.int64, device=hidden.device)

    with torch.inference_mode():
        step = GraphedDecodeStep(layer, batch) if cuda_graphs else layer
        for i in range(warmup):
            step(hidden, attend, positions(i))
        clock.sync()
        barrier()
        timer = _CommTimer(clock) if time_comm else None
        layer.comm_timer = timer
        marks = [clock.mark()]
        for i in range(steps):
            step(hidden, attend, positions(warmup + i))
            marks.append(clock.mark())
        clock.sync()
        layer.comm_timer = None
    per_step = [clock.elapsed_ms(a, b) for a, b in zip(marks, marks[1:], strict=False)]
    return dict(mean_ms=sum(per_step) / steps, median_ms=statistics.median(per_step),
                comm_ms=(timer.total_ms() / steps) if timer else 0.0)


@dataclass(frozen=True)
class TpResult:
    """One :func:`run_tp_bench` run (times in ms per decode step of one layer).

    step_ms: mean step time, max over ranks (step_ms_median likewise for medians;
    per_rank_step_ms the ranks' means). comm_ms: mean over ranks of the time inside
    the all-reduces (comm_ms_max the max), comm_share = comm_ms / step_ms.
    nocomm_step_ms: the step with the all-reduces skipped (None if not timed),
    comm_overhead_ms = step_ms - nocomm_step_ms. tp1_step_ms: the unsharded layer on
    one device; speedup = tp1_step_ms / step_ms, scaling_efficiency = speedup / tp.
    tokens_per_s: batch_size / step time (one layer); est_model_tokens_per_s: the
    same for all num_layers layers (embedding and LM head excluded).
    """

    model: str
    num_layers: int
    method: str
    context: int
    batch_size: int
    page_size: int
    topk_pages: int
    tp: int
    steps: int
    warmup: int
    dtype: str
    backend: str
    cuda_graphs: bool
    attention: str
    device: str
    local_q_heads: int
    local_kv_heads: int
    kv_replicas: int
    mlp_width_per_rank: int
    moe_as_dense: bool
    step_ms: float
    step_ms_median: float
    per_rank_step_ms: list[float]
    comm_ms: float
    comm_ms_max: float
    comm_share: float
    nocomm_step_ms: float | None
    comm_overhead_ms: float | None
    tokens_per_s: float
    est_model_tokens_per_s: float
    tp1_step_ms: float | None
    tp1_tokens_per_s: float | None
    speedup: float | None
    scaling_efficiency: float | None


def _check_tp_args(context: int, batch_size: int, page_size: int, topk_pages: int, tp: int,
                   steps: int, warmup: int) -> None:
    for name, value, low in (("context", context, 0), ("batch_size", batch_size, 1),
                             ("tp", tp, 1), ("steps", steps, 1), ("warmup", warmup, 0),
                             ("page_size", page_size, 1), ("topk_pages", topk_pages, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


def _factory_label(factory: Callable) -> str:
    return getattr(factory, "label", None) or getattr(factory, "__name__",
                                                      type(factory).__name__)


def run_tp_bench(model_name: str | ModelSpec, method: str, context: int, batch_size: int,
                 page_size: int, topk_pages: int, tp: int, steps: int, warmup: int,
                 dtype: str = "bfloat16", attend_factory: Callable | None = None, *,
                 seed: int = 0, baseline: bool = True, nocomm: bool = True,
                 cuda_graphs: bool = True) -> TpResult | None:
    """Time one tensor-parallel decoder layer's decode step; call on every rank.

    Args:
        model_name: preset name (see kinetics.models) or a ModelSpec.
        method: attention method label (e.g. 'dense', 'topk'), handed to the factory.
        context: tokens already in each request's KV cache (prefilled by the factory).
        batch_size: requests decoded together (one new token each per step).
        page_size, topk_pages: paged-cache / block top-k settings, handed to the factory.
        tp: tensor-parallel degree = number of processes (torchrun --nproc-per-node).
        steps, warmup: timed and untimed decode steps per measured variant.
        dtype: 'bfloat16', 'float16' or 'float32'.
        attend_factory: ``factory(local_q_heads, local_kv_heads, head_dim, batch_size,
            context, device, dtype, **extras) -> attend``, where extras are those of
            method, page_size, topk_pages, kv_head_start that its signature names (all
            of them if it takes **kwargs). The attend owns the rank's KV cache with
            ``context`` tokens and must accept ``warmup + steps`` appends. A fresh one
            is made per measured variant. None: dense torch attention (method 'dense').
        seed: weight and input seed.
        baseline: also time the unsharded layer alone on rank 0 (tp 1 reference).
        nocomm: also time the sharded layer with its all-reduces skipped.
        cuda_graphs: on GPUs, replay the layer's work outside attention (and each
            all-reduce) as CUDA graphs, attention eager, as vLLM's piecewise graphs do
            (:class:`kinetics.model.layer.GraphedDecodeStep`); False: plain eager PyTorch,
            whose kernel-launch overhead dominates small-batch steps. Ignored on CPU.

    Returns a :class:`TpResult` on rank 0, None on the other ranks.
    """
    from kinetics.model.layer import dense_attend_factory
    from kinetics.model.parallel import shard_plan

    model = model_name if isinstance(model_name, ModelSpec) else get_model(model_name)
    _check_tp_args(context, batch_size, page_size, topk_pages, tp, steps, warmup)
    torch_dtype = parse_dtype(dtype)
    if attend_factory is None:
        if method != "dense":
            raise InputError(f"method '{method}' needs an attend_factory (kinetics.attention); "
                             "without one only 'dense' runs")
        attend_factory = dense_attend_factory
    shard_plan(model, tp, 0)  # raise InputError on every rank before any communication
    run = _TpRun(model, method, context, batch_size, page_size, topk_pages, tp, steps, warmup,
                 torch_dtype, attend_factory, seed, cuda_graphs)
    try:
        return run.measure(baseline, nocomm)
    finally:
        shutdown_distributed(run.info)


class _TpRun:
    """The measurements of one :func:`run_tp_bench` call on this rank."""

    def __init__(self, model: ModelSpec, method: str, context: int, batch_size: int,
                 page_size: int, topk_pages: int, tp: int, steps: int, warmup: int, dtype,
                 attend_factory: Callable, seed: int, cuda_graphs: bool) -> None:
        import torch

        self.model, self.method, self.context, self.batch = model, method, context, batch_size
        self.page_size, self.topk_pages, self.tp = page_size, topk_pages, tp
        self.steps, self.warmup, self.dtype, self.seed = steps, warmup, dtype, seed
        self.factory = attend_factory
        self.info = init_distributed(tp)
        self.device, self.group = self.info.device, self.info.group
        self.clock = Clock(self.device)
        self.graphs = cuda_graphs and self.device.type == "cuda"
        gen = torch.Generator().manual_seed(seed)
        self.hidden = torch.randn(batch_size, model.hidden_size, generator=gen).to(
            self.device, dtype)

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.group is not None:
            dist.barrier(group=self.group)

    def build(self, tp_size: int, tp_rank: int, group):
        from kinetics.model.layer import ShardedDecoderLayer

        return ShardedDecoderLayer(self.model, tp_size, tp_rank, group, self.dtype, self.device,
                                   self.seed)

    def attend_for(self, layer):
        extras = dict(method=self.method, page_size=self.page_size, topk_pages=self.topk_pages,
                      kv_head_start=layer.kv_head_start)
        return _call_factory(self.factory, layer.local_q_heads, layer.local_kv_heads,
                             self.model.head_dim, self.batch, self.context, self.device,
                             self.dtype, extras)

    def time(self, layer, barrier: Callable[[], None], time_comm: bool) -> dict[str, Any]:
        return _time_layer(layer, self.attend_for(layer), self.hidden, self.context,
                           self.steps, self.warmup, self.clock, barrier, time_comm=time_comm,
                           cuda_graphs=self.graphs)

    def free(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def measure(self, baseline: bool, nocomm: bool) -> TpResult | None:
        rank = self.info.rank
        tp1 = None
        if baseline and self.tp > 1:
            if rank == 0:
                layer = self.build(1, 0, None)
                tp1 = self.time(layer, lambda: None, time_comm=False)
                del layer
                self.free()
            self.barrier()  # the other ranks wait here while rank 0 times tp 1
        layer = self.build(self.tp, rank, self.group)
        main = self.time(layer, self.barrier, time_comm=self.group is not None)
        self.free()
        no_comm = None
        if nocomm and self.group is not None:
            layer.communicate = False
            no_comm = self.time(layer, self.barrier, time_comm=False)
            layer.communicate = True
        local = [main["mean_ms"], main["median_ms"], main["comm_ms"],
                 no_comm["mean_ms"] if no_comm else float("nan")]
        rows = gather_rows(local, self.group, self.device)
        self.barrier()
        if rank != 0:
            return None
        return self.result(layer, rows, main if self.tp == 1 else tp1, no_comm is not None)

    def result(self, layer, rows: list[list[float]], tp1: dict | None,
               timed_nocomm: bool) -> TpResult:
        import torch

        m, batch = self.model, self.batch
        step_ms = max(r[0] for r in rows)
        comm_ms = sum(r[2] for r in rows) / len(rows)
        nocomm_ms = max(r[3] for r in rows) if timed_nocomm else None
        tp1_ms = tp1["mean_ms"] if tp1 else None
        speedup = tp1_ms / step_ms if tp1_ms else None
        return TpResult(
            model=m.name, num_layers=m.num_layers, method=self.method, context=self.context,
            batch_size=batch, page_size=self.page_size, topk_pages=self.topk_pages,
            tp=self.tp, steps=self.steps, warmup=self.warmup,
            dtype=str(self.dtype).removeprefix("torch."), backend=self.info.backend,
            cuda_graphs=self.graphs, attention=_factory_label(self.factory),
            device=(torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                    else "cpu"),
            local_q_heads=layer.local_q_heads, local_kv_heads=layer.local_kv_heads,
            kv_replicas=layer.kv_replicas, mlp_width_per_rank=layer.local_mlp,
            moe_as_dense=m.is_moe, step_ms=step_ms, step_ms_median=max(r[1] for r in rows),
            per_rank_step_ms=[r[0] for r in rows], comm_ms=comm_ms,
            comm_ms_max=max(r[2] for r in rows),
            comm_share=comm_ms / step_ms if step_ms > 0 else 0.0, nocomm_step_ms=nocomm_ms,
            comm_overhead_ms=(step_ms - nocomm_ms) if nocomm_ms is not None else None,
            tokens_per_s=batch * 1e3 / step_ms,
            est_model_tokens_per_s=batch * 1e3 / (step_ms * m.num_layers),
            tp1_step_ms=tp1_ms, tp1_tokens_per_s=batch * 1e3 / tp1_ms if tp1_ms else None,
            speedup=speedup, scaling_efficiency=speedup / self.tp if speedup else None)


def format_tp_result(result: TpResult) -> str:
    """Human-readable summary of :func:`run_tp_bench`'s result (a few lines)."""
    def ms(x):
        return "n/a" if x is None else f"{x:.3f} ms"

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    r = result
    replicated = (f" (each replicated on {r.kv_replicas} ranks)"
                  if r.kv_replicas > 1 else "")
    moe = ", MoE as dense active-expert MLP" if r.moe_as_dense else ""
    speedup = "n/a" if r.speedup is None else f"{r.speedup:.2f}x"
    graphs = ", CUDA graphs" if r.cuda_graphs else ""
    lines = [
        f"{r.model} one decoder layer, tp {r.tp} ({r.backend}, {r.device}{graphs}), "
        f"{r.dtype}, {r.attention} ({r.method}), batch {r.batch_size}, "
        f"context {r.context}{moe}",
        f"  per rank: {r.local_q_heads} q heads, {r.local_kv_heads} kv heads{replicated}, "
        f"MLP width {r.mlp_width_per_rank}",
        f"  step latency   {ms(r.step_ms)} (median {ms(r.step_ms_median)}), "
        f"{r.tokens_per_s:.0f} tokens/s per layer, ~{r.est_model_tokens_per_s:.0f} "
        f"tokens/s for all {r.num_layers} layers",
        f"  all-reduce     {ms(r.comm_ms)} per step ({pct(r.comm_share)} of the step); "
        f"without all-reduce {ms(r.nocomm_step_ms)}",
        f"  tp 1 (1 device) {ms(r.tp1_step_ms)}; speedup {speedup}, "
        f"scaling efficiency {pct(r.scaling_efficiency)}",
    ]
    return "\n".join(lines)


@dataclass
class TpLayerTiming(TimedCell):
    """One decoder layer under real tensor parallelism, whole step in one CUDA graph.

    Attributes (ms per decode step of one layer; max over ranks unless said):
        model, method, impl, batch, context, tp: the configuration.
        step_ms: the step with its two all-reduces.
        nocomm_ms: the same graph without the all-reduces (``layer.communicate = False``).
        allreduce_ms: the two all-reduces alone ([batch, hidden] each), one graph.
        tp1_ms: the unsharded layer on rank 0's GPU alone, same run.
        symm_step_ms, symm_allreduce_ms: step_ms and allreduce_ms with the all-reduces
            done by torch symmetric memory's one-shot kernel (:class:`OneShotAllReduce`,
            NVLink peer loads, no multicast) instead of NCCL; None if it failed.
        piecewise_gpu_ms, piecewise_host_ms: the previous scheme (graphs around eager
            attention, ``GraphedDecodeStep``): GPU time per step and host time to
            enqueue one step; host >= GPU means the step is launch (CPU) bound.
        per_rank_ms: step_ms of each rank.
    """

    step_ms: float
    nocomm_ms: float
    allreduce_ms: float
    tp1_ms: float | None
    piecewise_gpu_ms: float
    piecewise_host_ms: float
    per_rank_ms: list[float]
    symm_step_ms: float | None = None
    symm_allreduce_ms: float | None = None
    symm_error: str | None = None

    @property
    def speedup(self) -> float | None:
        return self.tp1_ms / self.step_ms if self.tp1_ms else None

    @property
    def scaling_efficiency(self) -> float | None:
        return self.speedup / self.tp if self.speedup else None

    @property
    def comm_share(self) -> float:
        """(step - no-communication step) / step."""
        return (self.step_ms - self.nocomm_ms) / self.step_ms


def _graphed_layer_ms(layer, attend, hidden, positions, impl: str, inner: int, repeats: int,
                      barrier) -> float:
    """ms per step of ``inner`` layer steps captured as one graph."""
    import torch

    from kinetics.bench.decode import layer_step_fn

    step = layer_step_fn(layer, impl)

    def run():
        for _ in range(inner):
            step(hidden, attend, positions)
    with torch.inference_mode():
        graph = capture_graph(run)
        t = time_replays(graph.replay, inner, repeats, barrier=barrier)
    del graph
    return t.ms


def _piecewise_ms(layer, attend, hidden, positions, steps: int, barrier) -> tuple[float, float]:
    """(GPU ms, host ms) per step of GraphedDecodeStep with eager attention."""
    import time

    import torch

    from kinetics.model.layer import GraphedDecodeStep

    with torch.inference_mode():
        step = GraphedDecodeStep(layer, hidden.shape[0])
        for _ in range(5):
            step(hidden, attend, positions)
        torch.cuda.synchronize()
        barrier()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        host0 = time.perf_counter()
        start.record()
        for _ in range(steps):
            step(hidden, attend, positions)
        end.record()
        host = (time.perf_counter() - host0) * 1e3 / steps
        torch.cuda.synchronize()
    return start.elapsed_time(end) / steps, host


def _allreduce_ms(reduce, inner: int, repeats: int, barrier) -> float:
    """ms per step of the two all-reduces alone (``reduce()`` = one), one graph of ``inner``."""
    def run():
        for _ in range(2 * inner):
            reduce()
    graph = capture_graph(run)
    return time_replays(graph.replay, inner, repeats, barrier=barrier).ms


def _symm_timing(layer, attend, hidden, positions, impl: str, inner: int, repeats: int,
                 barrier) -> tuple[float, float, str | None]:
    """(step ms, all-reduce pair ms, error) with :class:`OneShotAllReduce` in the layer."""
    import torch

    try:
        reducer = OneShotAllReduce(layer.group, tuple(hidden.shape), hidden.dtype, hidden.device)
        layer.all_reduce = reducer.layer_hook(layer)
        step = _graphed_layer_ms(layer, attend, hidden, positions, impl, inner, repeats, barrier)
        partial = torch.randn_like(hidden)
        return step, _allreduce_ms(lambda: reducer(partial), inner, repeats, barrier), None
    except Exception as exc:  # noqa: BLE001 - an optional path; the NCCL numbers stand
        return float("nan"), float("nan"), f"{type(exc).__name__}: {exc}"[:300]
    finally:
        layer.__dict__.pop("all_reduce", None)


def tp_layer_timing(model_name: str, method: str, batch: int, context: int, tp: int,
                    rank: int, group, *, page_size: int = 16, topk_pages: int = 64,
                    impl: str = "fused", inner: int = 8, repeats: int = 30,
                    seed: int = 0, try_symm: bool = False) -> TpLayerTiming:
    """Time one layer at ``tp`` over ``group`` (call on every rank; same result on all).

    ``try_symm``: also time the step with :class:`OneShotAllReduce` all-reduces.
    """
    import torch
    import torch.distributed as dist

    from kinetics.bench.model import layer_attend
    from kinetics.model.layer import ShardedDecoderLayer

    spec = get_model(model_name)
    dev = torch.device("cuda", torch.cuda.current_device())
    dtype = torch.bfloat16
    hidden = torch.randn(batch, spec.hidden_size, dtype=dtype, device=dev,
                         generator=torch.Generator(device=dev).manual_seed(seed))
    positions = torch.full((batch,), context - 1, dtype=torch.int64, device=dev)

    def barrier():
        if group is not None:
            dist.barrier(group=group)

    def build(size: int, r: int, grp):
        layer = ShardedDecoderLayer(spec, size, r, grp, dtype, dev, seed)
        return layer, layer_attend(layer, method, batch, context, page_size, topk_pages, seed)

    def graphed(layer, attend, sync) -> float:
        return _graphed_layer_ms(layer, attend, hidden, positions, impl, inner, repeats, sync)

    tp1 = None
    if rank == 0:
        layer, attend = build(1, 0, None)
        tp1 = graphed(layer, attend, None)
        del layer, attend
        torch.cuda.empty_cache()
    barrier()
    layer, attend = build(tp, rank, group)
    step = graphed(layer, attend, barrier)
    layer.communicate = False
    nocomm = graphed(layer, attend, barrier)
    layer.communicate = True
    piece_gpu, piece_host = _piecewise_ms(layer, attend, hidden, positions, 50, barrier)
    partial = torch.randn_like(hidden)
    comm = (_allreduce_ms(lambda: dist.all_reduce(partial, group=group), inner, repeats,
                          barrier) if group is not None else 0.0)
    symm = (_symm_timing(layer, attend, hidden, positions, impl, inner, repeats, barrier)
            if try_symm else (float("nan"), float("nan"), "not tried"))
    rows = gather_rows(
        [step, nocomm, comm, piece_gpu, piece_host, tp1 or 0.0, symm[0], symm[1]], group, dev)

    def worst(i: int) -> float | None:
        values = [r[i] for r in rows]
        return None if any(math.isnan(v) for v in values) else max(values)
    return TpLayerTiming(spec.name, method, impl, batch, context, tp, worst(0), worst(1),
                         worst(2), rows[0][5] or None, worst(3), worst(4),
                         [r[0] for r in rows], worst(6), worst(7), symm[2])


class OneShotAllReduce:
    """Sum of a [batch, hidden] tensor over a group by torch symmetric memory.

    The partial sum is copied into a symmetric buffer (allocated on every rank and
    exchanged once, ``rendezvous``); ``torch.ops.symm_mem.one_shot_all_reduce_out``
    then has each rank read its peers' buffers over NVLink and add them: one kernel,
    no NCCL protocol set-up, no multicast (NVLS stays off). Graph-capturable.
    """

    def __init__(self, group, shape: tuple[int, ...], dtype, device) -> None:
        import torch
        import torch.distributed._symmetric_memory as symm_mem

        self.group_name = group.group_name
        try:
            symm_mem.enable_symm_mem_for_group(self.group_name)
        except Exception:  # noqa: BLE001 - deprecated / not needed in newer torch
            pass
        self.buffer = symm_mem.empty(shape, dtype=dtype, device=device)
        symm_mem.rendezvous(self.buffer, self.group_name)
        self.op = torch.ops.symm_mem.one_shot_all_reduce_out

    def __call__(self, partial):
        self.buffer.copy_(partial)
        self.op(self.buffer, "sum", self.group_name, partial)
        return partial

    def layer_hook(self, layer):
        """A replacement for ``layer.all_reduce`` that honours ``layer.communicate``."""
        def all_reduce(partial):
            return self(partial) if layer.communicate else partial
        return all_reduce


def format_tp_layer_timing(t: TpLayerTiming) -> str:
    """Summary of :func:`tp_layer_timing` (a few lines, ms per step of one layer)."""
    eff = "n/a" if t.scaling_efficiency is None else f"{100 * t.scaling_efficiency:.1f}%"
    tp1 = "n/a" if t.tp1_ms is None else f"{t.tp1_ms:.4f} ms"
    return "\n".join([
        f"{t.model} one decoder layer ({t.impl}), {t.method}, tp {t.tp}, batch {t.batch}, "
        f"context {t.context}, whole step in one CUDA graph",
        f"  step {t.step_ms:.4f} ms (ranks {', '.join(f'{x:.4f}' for x in t.per_rank_ms)}); "
        f"without all-reduce {t.nocomm_ms:.4f} ms; the two all-reduces alone "
        f"{t.allreduce_ms:.4f} ms ({100 * t.comm_share:.1f}% of the step)",
        f"  tp 1 (1 device) {tp1}; scaling efficiency {eff}",
        f"  piecewise graphs (eager attention): GPU {t.piecewise_gpu_ms:.4f} ms, host "
        f"{t.piecewise_host_ms:.4f} ms per step"])


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun --nproc-per-node N -m kinetics.bench.tp --tp N ...``."""
    p = argparse.ArgumentParser(prog="python -m kinetics.bench.tp",
                                description="Tensor-parallel decode step of one layer.")
    p.add_argument("--model", default="qwen3-8b")
    p.add_argument("--method", choices=("dense", "blocktopk"), default="dense")
    p.add_argument("--paged", action="store_true",
                   help="paged cache + flashinfer kernels (kinetics.attention); needed for "
                   "blocktopk. Default: torch SDPA over a contiguous cache (dense)")
    p.add_argument("--page-size", type=int, default=16)
    p.add_argument("--topk-pages", type=int, default=64)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--tp", type=int, default=int(os.environ.get("WORLD_SIZE", "1")))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--eager", action="store_true", help="no CUDA graphs (eager PyTorch)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    try:
        factory = None
        if args.paged or args.method != "dense":
            factory = paged_attend_factory(args.method, args.page_size, args.topk_pages)
        result = run_tp_bench(args.model, args.method, args.context, args.batch_size,
                              args.page_size, args.topk_pages, args.tp, args.steps,
                              args.warmup, args.dtype, factory, cuda_graphs=not args.eager)
    except InputError as exc:
        print(f"kinetics.bench.tp: error: {exc}", flush=True)
        return 2
    if result is not None:
        print(json.dumps(asdict(result), indent=2) if args.json else format_tp_result(result),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
