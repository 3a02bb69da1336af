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

torch is imported lazily, so ``import kinetics.bench.tp`` needs no torch.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from kinetics.errors import InputError
from kinetics.models import ModelSpec, get_model

_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
           "half": "float16", "float32": "float32", "fp32": "float32", "float": "float32"}

# extra keywords handed to an attend_factory whose signature names them (or has **kwargs)
_FACTORY_EXTRAS = ("method", "page_size", "topk_pages", "kv_head_start")


def parse_dtype(dtype: Any):
    """'bfloat16' / 'bf16' / 'float16' / 'fp16' / 'float32' / 'fp32' (or a torch.dtype)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPES.get(str(dtype).lower())
    if name is None:
        raise InputError(f"unknown dtype '{dtype}' (choose from {', '.join(_DTYPES)})")
    return getattr(torch, name)


def init_distributed(tp: int) -> dict[str, Any]:
    """Join (or create) the process group torchrun describes; pick this rank's device.

    Reads RANK, WORLD_SIZE and LOCAL_RANK (torchrun sets them, with MASTER_ADDR and
    MASTER_PORT). Sets ``NCCL_NVLS_ENABLE=0`` (and
    ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``) before initializing. Backend: nccl if
    CUDA is available, else gloo. With tp == 1 and no WORLD_SIZE, no group is made.

    Returns dict(rank, world_size, local_rank, device, backend, group, created), where
    group is the world group (None without one) and created says whether this call
    initialized it (then :func:`shutdown_distributed` destroys it).
    """
    import torch
    import torch.distributed as dist

    # NVLink multicast (NVLS) stays off: set before any process group or NCCL comm exists
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"] = "1"
    cuda = torch.cuda.is_available()
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        created = False
        cuda = cuda and "nccl" in str(dist.get_backend()).lower()  # a gloo group: CPU tensors
    else:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        created = world > 1
    if world != tp:
        raise InputError(f"--tp {tp} needs {tp} processes, found {world}: launch with "
                         f"torchrun --nproc-per-node {tp} -m kinetics bench --distributed --tp {tp} ...")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = "nccl" if cuda else "gloo"
    if created:
        kwargs = {"device_id": device} if cuda else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    group = dist.group.WORLD if dist.is_initialized() else None
    if dist.is_initialized():
        backend = dist.get_backend()
    return dict(rank=rank, world_size=world, local_rank=local_rank, device=device,
                backend=backend if group is not None else "none", group=group, created=created)


def shutdown_distributed(info: dict[str, Any]) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    import torch.distributed as dist

    if info.get("created") and dist.is_initialized():
        dist.destroy_process_group()


class _Clock:
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


class _CommTimer:
    """start()/stop() around each all-reduce; total() in ms after the clock syncs."""

    def __init__(self, clock: _Clock) -> None:
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
                         use_tensor_cores: bool = False, seed: int = 0) -> Callable:
    """An ``attend_factory`` over kinetics.attention's paged cache and flashinfer kernels.

    Each rank gets a :class:`kinetics.attention.cache.PagedKVCache` of ``context``
    random tokens for its own KV heads (pages in random order; seed offset by the
    rank's first KV head) and a ``FlashinferDenseDecode`` (method 'dense') or
    ``FlashinferBlockTopkDecode`` (method 'blocktopk': page selection and sparse
    attention over this rank's KV heads only). As in ``kinetics bench``, the attend
    writes each new token over the last cached slot, so the KV length stays
    ``context`` and the planned kernels stay valid for any number of steps.
    Needs CUDA, triton and flashinfer.
    """
    if method not in ("dense", "blocktopk"):
        raise InputError(f"unknown method '{method}' (choose from dense, blocktopk)")

    def factory(local_q_heads: int, local_kv_heads: int, head_dim: int, batch_size: int,
                context: int, device, dtype, *, kv_head_start: int = 0):
        import torch

        from kinetics.attention.cache import PagedKVCache
        from kinetics.attention.decode import FlashinferBlockTopkDecode, FlashinferDenseDecode

        if context < 1:
            raise InputError("the paged attention needs context >= 1")
        cache = PagedKVCache.random(batch_size, local_kv_heads, head_dim, context,
                                    page_size=page_size, dtype=dtype, device=device,
                                    seed=seed + kv_head_start)
        if method == "dense":
            decode = FlashinferDenseDecode(cache, local_q_heads, use_tensor_cores)
        else:
            decode = FlashinferBlockTopkDecode(cache, local_q_heads, topk_pages, local_pages,
                                               use_tensor_cores)
        out = torch.empty(batch_size, local_q_heads, head_dim, dtype=dtype, device=device)
        last_page = cache.page_table[:, (context - 1) // page_size].long()
        slot = (context - 1) % page_size

        def attend(q, k, v):
            cache.k_pages[last_page, :, slot] = k
            cache.v_pages[last_page, :, slot] = v
            return decode(q.contiguous(), out)

        return attend

    factory.label = f"flashinfer paged {method}"  # type: ignore[attr-defined]
    return factory


def _time_layer(layer, attend, hidden, context: int, steps: int, warmup: int, clock: _Clock,
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


def run_tp_bench(model_name: str | ModelSpec, method: str, context: int, batch_size: int,
                 page_size: int, topk_pages: int, tp: int, steps: int, warmup: int,
                 dtype: str = "bfloat16", attend_factory: Callable | None = None, *,
                 seed: int = 0, baseline: bool = True, nocomm: bool = True,
                 cuda_graphs: bool = True) -> dict | None:
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

    Returns (rank 0; other ranks return None) a dict with, in milliseconds per decode
    step of one layer: step_ms, step_ms_median, comm_ms, comm_ms_max, nocomm_step_ms,
    comm_overhead_ms, tp1_step_ms; and comm_share (comm_ms / step_ms), tokens_per_s
    (batch_size / step time, one layer), est_model_tokens_per_s (all num_layers
    layers, excluding embedding and LM head), speedup, scaling_efficiency
    (speedup / tp), per_rank_step_ms, and the settings.
    """
    import torch
    import torch.distributed as dist

    from kinetics.model.layer import ShardedDecoderLayer, dense_attend_factory, shard_plan

    model = model_name if isinstance(model_name, ModelSpec) else get_model(model_name)
    for name, value, low in (("context", context, 0), ("batch_size", batch_size, 1),
                             ("tp", tp, 1), ("steps", steps, 1), ("warmup", warmup, 0),
                             ("page_size", page_size, 1), ("topk_pages", topk_pages, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    torch_dtype = parse_dtype(dtype)
    if attend_factory is None:
        if method != "dense":
            raise InputError(f"method '{method}' needs an attend_factory (kinetics.attention); "
                             "without one only 'dense' runs")
        attend_factory = dense_attend_factory
    attention_label = getattr(attend_factory, "label", None) or getattr(
        attend_factory, "__name__", type(attend_factory).__name__)
    shard_plan(model, tp, 0)  # raise InputError on every rank before any communication

    info = init_distributed(tp)
    try:
        rank, device, group = info["rank"], info["device"], info["group"]
        clock = _Clock(device)
        graphs = cuda_graphs and device.type == "cuda"

        def barrier() -> None:
            if group is not None:
                dist.barrier(group=group)

        gen = torch.Generator().manual_seed(seed)
        hidden = torch.randn(batch_size, model.hidden_size, generator=gen).to(device, torch_dtype)
        extras = dict(method=method, page_size=page_size, topk_pages=topk_pages)

        def build(tp_size: int, tp_rank: int, grp):
            return ShardedDecoderLayer(model, tp_size, tp_rank, grp, torch_dtype, device, seed)

        def attend_for(layer):
            return _call_factory(attend_factory, layer.local_q_heads, layer.local_kv_heads,
                                 model.head_dim, batch_size, context, device, torch_dtype,
                                 {**extras, "kv_head_start": layer.kv_head_start})

        def free() -> None:
            if device.type == "cuda":
                torch.cuda.empty_cache()

        tp1 = None
        if baseline and tp > 1:
            if rank == 0:
                layer = build(1, 0, None)
                tp1 = _time_layer(layer, attend_for(layer), hidden, context, steps, warmup,
                                  clock, lambda: None, time_comm=False, cuda_graphs=graphs)
                del layer
                free()
            barrier()  # the other ranks wait here while rank 0 times tp 1

        layer = build(tp, rank, group)
        main = _time_layer(layer, attend_for(layer), hidden, context, steps, warmup, clock,
                           barrier, time_comm=group is not None, cuda_graphs=graphs)
        free()
        no_comm = None
        if nocomm and group is not None:
            layer.communicate = False
            no_comm = _time_layer(layer, attend_for(layer), hidden, context, steps, warmup,
                                  clock, barrier, time_comm=False, cuda_graphs=graphs)
            layer.communicate = True
        local = [main["mean_ms"], main["median_ms"], main["comm_ms"],
                 no_comm["mean_ms"] if no_comm else float("nan")]
        rows = _gather(local, group, device)
        barrier()
        if rank != 0:
            return None
        if tp == 1:
            tp1 = main
        step_ms = max(r[0] for r in rows)
        comm_ms = sum(r[2] for r in rows) / len(rows)
        nocomm_ms = max(r[3] for r in rows) if no_comm else None
        tp1_ms = tp1["mean_ms"] if tp1 else None
        speedup = tp1_ms / step_ms if tp1_ms else None
        return dict(
            model=model.name, num_layers=model.num_layers, method=method, context=context, batch_size=batch_size,
            page_size=page_size, topk_pages=topk_pages, tp=tp, steps=steps, warmup=warmup,
            dtype=str(torch_dtype).removeprefix("torch."), backend=info["backend"],
            cuda_graphs=graphs, attention=attention_label,
            device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            local_q_heads=layer.local_q_heads, local_kv_heads=layer.local_kv_heads,
            kv_replicas=layer.kv_replicas, mlp_width_per_rank=layer.local_mlp,
            moe_as_dense=model.is_moe,
            step_ms=step_ms, step_ms_median=max(r[1] for r in rows),
            per_rank_step_ms=[r[0] for r in rows],
            comm_ms=comm_ms, comm_ms_max=max(r[2] for r in rows),
            comm_share=comm_ms / step_ms if step_ms > 0 else 0.0,
            nocomm_step_ms=nocomm_ms,
            comm_overhead_ms=(step_ms - nocomm_ms) if nocomm_ms is not None else None,
            tokens_per_s=batch_size * 1e3 / step_ms,
            est_model_tokens_per_s=batch_size * 1e3 / (step_ms * model.num_layers),
            tp1_step_ms=tp1_ms,
            tp1_tokens_per_s=batch_size * 1e3 / tp1_ms if tp1_ms else None,
            speedup=speedup,
            scaling_efficiency=speedup / tp if speedup else None,
        )
    finally:
        shutdown_distributed(info)


def _gather(values: list[float], group, device) -> list[list[float]]:
    """All ranks' `values` (rank order); one row without a group."""
    import torch
    import torch.distributed as dist

    if group is None:
        return [values]
    t = torch.tensor(values, dtype=torch.float64, device=device)
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t, group=group)
    return [o.cpu().tolist() for o in out]


def format_tp_result(result: dict) -> str:
    """Human-readable summary of :func:`run_tp_bench`'s result (a few lines)."""
    def ms(x):
        return "n/a" if x is None else f"{x:.3f} ms"

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    r = result
    replicated = (f" (each replicated on {r['kv_replicas']} ranks)"
                  if r["kv_replicas"] > 1 else "")
    moe = ", MoE as dense active-expert MLP" if r["moe_as_dense"] else ""
    speedup = "n/a" if r["speedup"] is None else f"{r['speedup']:.2f}x"
    graphs = ", CUDA graphs" if r["cuda_graphs"] else ""
    lines = [
        f"{r['model']} one decoder layer, tp {r['tp']} ({r['backend']}, {r['device']}{graphs}), "
        f"{r['dtype']}, {r['attention']} ({r['method']}), batch {r['batch_size']}, "
        f"context {r['context']}{moe}",
        f"  per rank: {r['local_q_heads']} q heads, {r['local_kv_heads']} kv heads{replicated}, "
        f"MLP width {r['mlp_width_per_rank']}",
        f"  step latency   {ms(r['step_ms'])} (median {ms(r['step_ms_median'])}), "
        f"{r['tokens_per_s']:.0f} tokens/s per layer, ~{r['est_model_tokens_per_s']:.0f} "
        f"tokens/s for all {r['num_layers']} layers",
        f"  all-reduce     {ms(r['comm_ms'])} per step ({pct(r['comm_share'])} of the step); "
        f"without all-reduce {ms(r['nocomm_step_ms'])}",
        f"  tp 1 (1 device) {ms(r['tp1_step_ms'])}; speedup {speedup}, "
        f"scaling efficiency {pct(r['scaling_efficiency'])}",
    ]
    return "\n".join(lines)


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
        print(json.dumps(result, indent=2) if args.json else format_tp_result(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
