"""One decoder layer under real tensor parallelism over torch.distributed.

Launch one process per GPU with torchrun; every rank calls :func:`tp_layer_timing`
with the same :class:`~kinetics.bench.spec.DecodeSpec` and gets the same result::

    torchrun --nproc-per-node 4 -m kinetics bench --distributed --tp 4 ...

On GPUs the process group uses NCCL (NVLink multicast off), on CPUs gloo
(:func:`kinetics.model.parallel.init_distributed`). Each rank builds its
:class:`~kinetics.model.layer.ShardedDecoderLayer` shard and its own KV cache for its
local KV heads, so the cache and the block top-k selection are local to each rank, as
in vLLM: on GPUs the spec's paged cache and decoders
(:func:`kinetics.bench.spec.layer_attend`, the new token written over the last cached
slot); on CPUs a contiguous float32 cache with dense torch attention
(:class:`kinetics.model.layer.DenseKVAttend`, method ``dense`` only).

Timing, one scheme: ``inner`` whole layer steps (non-attention work, attention and both
all-reduces) are one callable, timed by the shared timer with the ranks aligned by a
barrier: on GPUs captured as ONE CUDA graph (:func:`kinetics.bench.timing.time_graph`),
on CPUs called eagerly (:func:`kinetics.bench.timing.time_replays`, ``perf_counter``).
:class:`TpLayerTiming` reports, in ms per step of one layer and the slowest rank's:
the step; the same step with the all-reduces skipped (``layer.communicate = False``);
the two all-reduces alone (one ``[batch, hidden]`` tensor each); and the unsharded
layer on rank 0 alone in the same run (the other ranks wait at a barrier), whence the
speedup and the scaling efficiency. The spec's ``replicas`` do not apply (one cache).

torch is imported lazily, so ``import kinetics.bench.tp`` needs no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kinetics.bench.spec import DecodeSpec, check_methods, layer_attend
from kinetics.bench.timing import time_graph, time_replays
from kinetics.errors import InputError
from kinetics.model.capture import LAYER_IMPLS, layer_step_fn
from kinetics.model.parallel import gather_rows


@dataclass
class TpLayerTiming:
    """One decoder layer under real tensor parallelism (ms per decode step of one layer;
    the slowest rank's unless said).

    Attributes:
        spec, method, impl: the workload, 'dense' / 'blocktopk', the layer implementation.
        backend, device: 'nccl' / 'gloo' / 'none' and the device's name ('cpu').
        step_ms: the step with its two all-reduces.
        nocomm_ms: the same step without the all-reduces.
        allreduce_ms: the two all-reduces alone (0 without a process group).
        tp1_ms: the unsharded layer on rank 0's device alone, same run (None: not timed).
        per_rank_ms: step_ms of each rank.
    """

    spec: DecodeSpec
    method: str
    impl: str
    backend: str
    device: str
    step_ms: float
    nocomm_ms: float
    allreduce_ms: float
    tp1_ms: float | None
    per_rank_ms: list[float]

    @property
    def speedup(self) -> float | None:
        return self.tp1_ms / self.step_ms if self.tp1_ms else None

    @property
    def scaling_efficiency(self) -> float | None:
        return self.speedup / self.spec.tp if self.speedup else None

    @property
    def comm_share(self) -> float:
        """(step - no-communication step) / step."""
        return (self.step_ms - self.nocomm_ms) / self.step_ms

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON row: the spec's fields, then the method and the numbers."""
        return {**self.spec.to_dict(), "method": self.method, "impl": self.impl,
                "scope": "layer", "backend": self.backend, "device": self.device,
                "step_ms": self.step_ms, "nocomm_ms": self.nocomm_ms,
                "allreduce_ms": self.allreduce_ms, "tp1_ms": self.tp1_ms,
                "per_rank_ms": list(self.per_rank_ms), "speedup": self.speedup,
                "scaling_efficiency": self.scaling_efficiency, "comm_share": self.comm_share}


def _timer(device, inner: int, repeats: int) -> Callable:
    """``time(run, barrier) -> ms per step`` of ``run`` (``inner`` steps): one CUDA graph
    on a GPU, eager calls on the CPU."""
    if device.type == "cuda":
        return lambda run, barrier: time_graph(run, inner, repeats, barrier=barrier).ms
    return lambda run, barrier: time_replays(run, inner, repeats, warmup=2, barrier=barrier,
                                             device=device).ms


def _attend(spec: DecodeSpec, layer, method: str):
    """The rank's attend: the spec's paged cache on a GPU, DenseKVAttend on the CPU."""
    if layer.qkv_proj.device.type == "cuda":
        return layer_attend(spec, layer, method)
    from kinetics.model.layer import DenseKVAttend

    return DenseKVAttend(layer.local_q_heads, layer.local_kv_heads, layer.head_dim,
                         spec.batch_size, spec.context, layer.qkv_proj.device, layer.dtype,
                         kv_head_start=layer.kv_head_start, seed=spec.seed)


def tp_layer_timing(spec: DecodeSpec, method: str, rank: int, group, device, *,
                    layer_impl: str = "fused", inner: int = 8, repeats: int = 30
                    ) -> TpLayerTiming:
    """Time one layer of ``spec`` at ``spec.tp`` over ``group`` on ``device`` (call on
    every rank with the same arguments; the same result on all). InputError on a method
    or implementation the device cannot run."""
    import torch
    import torch.distributed as dist

    from kinetics.model.layer import ShardedDecoderLayer

    cuda = device.type == "cuda"
    if not cuda and check_methods((method,)) != ("dense",):
        raise InputError("no GPU here: the CPU tensor-parallel layer runs --method dense only "
                         "(gloo, torch attention); block top-k needs a GPU")
    model = spec.validate((method,))
    if layer_impl not in LAYER_IMPLS:
        raise InputError(f"unknown layer implementation '{layer_impl}' (choose from "
                         f"{', '.join(LAYER_IMPLS)})")
    if repeats < 1 or inner < 1:
        raise InputError(f"repeats and inner steps must be >= 1, got {repeats}, {inner}")
    dtype = torch.bfloat16 if cuda else torch.float32
    hidden = torch.randn(spec.batch_size, model.hidden_size,
                         generator=torch.Generator().manual_seed(spec.seed)).to(device, dtype)
    positions = torch.full((spec.batch_size,), spec.context - 1, dtype=torch.int64,
                           device=device)
    time_ms = _timer(device, inner, repeats)

    def barrier():
        if group is not None:
            dist.barrier(group=group)

    def layer_ms(layer, attend, sync) -> float:
        step = layer_step_fn(layer, layer_impl)

        def run():
            for _ in range(inner):
                step(hidden, attend, positions)
        with torch.inference_mode():
            return time_ms(run, sync)

    tp1 = None
    if rank == 0:
        layer = ShardedDecoderLayer(model, 1, 0, None, dtype, device, spec.seed)
        tp1 = layer_ms(layer, _attend(spec, layer, method), None)
        del layer
        if cuda:
            torch.cuda.empty_cache()
    barrier()
    layer = ShardedDecoderLayer(model, spec.tp, rank, group, dtype, device, spec.seed)
    attend = _attend(spec, layer, method)
    step = layer_ms(layer, attend, barrier)
    layer.communicate = False
    nocomm = layer_ms(layer, attend, barrier)
    layer.communicate = True
    comm = 0.0
    if group is not None:
        partial = torch.randn_like(hidden)

        def reduce_pair():
            for _ in range(2 * inner):
                dist.all_reduce(partial, group=group)
        comm = time_ms(reduce_pair, barrier)
    rows = gather_rows([step, nocomm, comm, tp1 or 0.0], group, device)
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    backend = dist.get_backend(group) if group is not None else "none"
    return TpLayerTiming(spec, method, layer_impl, str(backend), name,
                         max(r[0] for r in rows), max(r[1] for r in rows),
                         max(r[2] for r in rows), rows[0][3] or None, [r[0] for r in rows])


def format_tp_layer_timing(t: TpLayerTiming) -> str:
    """Summary of :func:`tp_layer_timing` (a few lines, ms per step of one layer)."""
    s = t.spec
    eff = "n/a" if t.scaling_efficiency is None else f"{100 * t.scaling_efficiency:.1f}%"
    tp1 = "n/a" if t.tp1_ms is None else f"{t.tp1_ms:.4f} ms"
    graph = "whole step in one CUDA graph" if t.device != "cpu" else "eager steps"
    return "\n".join([
        f"{s.model_name} one decoder layer ({t.impl}), {t.method}, tp {s.tp} ({t.backend}, "
        f"{t.device}), batch {s.batch_size}, context {s.context}, {graph}",
        f"  step {t.step_ms:.4f} ms (ranks {', '.join(f'{x:.4f}' for x in t.per_rank_ms)}); "
        f"without all-reduce {t.nocomm_ms:.4f} ms; the two all-reduces alone "
        f"{t.allreduce_ms:.4f} ms ({100 * t.comm_share:.1f}% of the step)",
        f"  tp 1 (1 device) {tp1}; scaling efficiency {eff}"])

