"""GPU timings of the whole-model decode step and of one layer under real TP.

Every timed step is ONE CUDA graph: all layers' (or one layer's) non-attention work
(``impl``, :data:`kinetics.bench.decode.LAYER_IMPLS`: the fused path by default),
the paged attention (the new token overwrites the last cached slot, so shapes stay
fixed) and, under tensor parallelism, the NCCL all-reduces.

* :func:`model_timings`: the whole model (embedding, L layers, final norm, LM head,
  greedy), one GPU or a torch.distributed group, as :class:`StepTiming`;
* :func:`tp_layer_timing`: one layer at tp vs tp 1 in the same run, whole-step graph
  vs the piecewise scheme, as :class:`TpLayerTiming`.

The decoder layer alone on one GPU is ``kinetics.bench.decode.compare_decode`` (layer
mode). Needs CUDA, triton and flashinfer; torch imports lazily.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kinetics.bench.timing import capture_graph, copy_bandwidth
from kinetics.models import get_model

IMPLS: tuple[str, ...] = ("reference", "fused", "fused-kv-separate", "compiled")


@dataclass
class StepTiming:
    """One timed decode step (per GPU).

    Attributes:
        scope: 'layer' (one layer shard) or 'model' (all layers, embedding, LM head).
        model, method, impl: preset, attention ('dense' / 'blocktopk'), implementation.
        batch, context, tp: requests, cached tokens per request, tensor-parallel degree.
        ms, ms_min, ms_p90: median / min / 90th percentile ms per step over replays.
        bytes_per_step: fewest bytes a step moves (weights once, KV or selected pages).
        copy_gbps: device-to-device copy bandwidth of the same run, GB/s.
        extra: further numbers (per-rank ms, no-communication ms, checks).
    """

    scope: str
    model: str
    method: str
    impl: str
    batch: int
    context: int
    tp: int
    ms: float
    ms_min: float
    ms_p90: float
    bytes_per_step: float
    copy_gbps: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.batch / (self.ms * 1e-3)

    @property
    def fraction_of_copy(self) -> float:
        return self.bytes_per_step / (self.ms * 1e-3) / 1e9 / self.copy_gbps


def time_replays(replay: Callable[[], Any], steps: int, repeats: int, warmup: int = 5,
                 barrier: Callable[[], None] | None = None) -> dict[str, float]:
    """Median / min / p90 ms per step of ``replay()`` (``steps`` decode steps each).

    Events on the current stream bracket each replay; ``barrier`` (ranks of a group)
    runs after the warm-up so all ranks start the timed replays together.
    """
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
    return {"ms": statistics.median(per_step), "ms_min": per_step[0],
            "ms_p90": per_step[int(0.9 * (len(per_step) - 1))]}


class CapturedStep:
    """A decode step recorded as ONE CUDA graph (attention and all-reduces included).

    ``fn(*inputs)`` returns the step's output (tensors, kept static); ``inputs`` are
    static tensors to ``copy_`` new values into before a ``replay()``. Warm-up and
    capture: :func:`kinetics.bench.timing.capture_graph`.
    """

    def __init__(self, fn: Callable, inputs: Sequence) -> None:
        self.inputs = list(inputs)
        held: list = []
        self.graph = capture_graph(lambda: held.append(fn(*self.inputs)))
        self.output = held[-1]  # the captured call's output: what each replay rewrites
        del held[:-1]

    def replay(self):
        """Run the recorded step; returns its (static, overwritten next time) output."""
        self.graph.replay()
        return self.output


def rel_err(out, ref) -> float:
    """||out - ref|| / ||ref|| in float32."""
    from kinetics.bench.decode import _rel_err

    return _rel_err(out, ref)


def layer_attend(layer, method: str, batch: int, context: int, page_size: int,
                 topk_pages: int, seed: int = 0):
    """A paged attend for one layer shard: its own cache of ``context`` random tokens
    for the layer's KV heads, and the ``method`` decoder (kinetics.bench.decode)."""
    import torch

    from kinetics.attention.cache import PagedKVCache
    from kinetics.bench.decode import BenchConfig, FixedSlotAttend, make_decoder

    cfg = BenchConfig(model=layer.model.name, context=context, batch_size=batch,
                      page_size=page_size, topk_pages=topk_pages)
    device = layer.qkv_proj.device
    cache = PagedKVCache.random(batch, layer.local_kv_heads, layer.head_dim, context,
                                page_size=page_size, dtype=layer.dtype, device=device,
                                seed=seed + layer.kv_head_start)
    out = torch.empty(batch, layer.local_q_heads, layer.head_dim, dtype=layer.dtype,
                      device=device)
    return FixedSlotAttend(cache, make_decoder(method, cache, layer.local_q_heads, cfg), out)


def model_attends(model, method: str, batch: int, context: int, page_size: int,
                  topk_pages: int, seed: int = 0) -> list:
    """One :func:`layer_attend` per layer of ``model`` (a ShardedDecoderModel)."""
    return [layer_attend(layer, method, batch, context, page_size, topk_pages, seed + 1000 * i)
            for i, layer in enumerate(model.layers)]


def model_step_bytes(model, method: str, batch: int, context: int, page_size: int,
                     topk_pages: int) -> float:
    """Fewest bytes of one whole-model step on one rank: weights (the embedding's
    ``batch`` rows only), and per layer the KV (dense) or page means + selected pages."""
    from kinetics.bench.decode import BenchConfig, _step_bytes

    layer = model.layers[0]
    cfg = BenchConfig(model=model.model.name, context=context, batch_size=batch,
                      page_size=page_size, topk_pages=topk_pages)
    attn = _step_bytes(cfg, layer.local_q_heads, layer.local_kv_heads, model.model.head_dim,
                       method, 0.0).total
    embed = model.embed_tokens
    weights = model.weight_bytes() - embed.numel() * embed.element_size()
    return weights + batch * embed.shape[1] * embed.element_size() + len(model.layers) * attn


def model_timings(model_name: str, methods: Sequence[str], batch: int, context: int, *,
                  page_size: int = 16, topk_pages: int = 64, impls: Sequence[str] = ("fused",),
                  tp: int = 1, rank: int = 0, group=None, copy_gbps: float | None = None,
                  repeats: int = 20, seed: int = 0, num_layers: int | None = None,
                  ) -> list[StepTiming]:
    """Time the whole-model decode step (one CUDA graph) per method and implementation.

    Call on every rank with the same arguments when ``group`` is a process group
    (``tp`` ranks). ``extra`` holds ``per_rank_ms``, ``logits_rel_err`` and
    ``tokens_agree`` (this implementation's graphed step vs the eager reference step
    on the same inputs).
    """
    import torch
    import torch.distributed as dist

    from kinetics.model.decoder import ShardedDecoderModel

    spec = get_model(model_name)
    dev = torch.device("cuda", torch.cuda.current_device())
    copy_gbps = copy_gbps or copy_bandwidth()
    model = ShardedDecoderModel(spec, tp, rank, group, torch.bfloat16, dev, seed, num_layers)
    gen = torch.Generator(device=dev).manual_seed(seed)
    tokens = torch.randint(0, spec.vocab_size, (batch,), device=dev, generator=gen)
    positions = torch.full((batch,), context - 1, dtype=torch.int64, device=dev)

    def barrier():
        if group is not None:
            dist.barrier(group=group)

    results = []
    for method in methods:
        attends = model_attends(model, method, batch, context, page_size, topk_pages, seed)
        nbytes = model_step_bytes(model, method, batch, context, page_size, topk_pages)
        with torch.inference_mode():
            ref = model.step(tokens, attends, positions, impl="reference")
            ref_logits, ref_tokens = ref.logits.clone(), ref.tokens.clone()
            for impl in impls:
                graph = CapturedStep(lambda t, p, impl=impl, a=attends, m=model: m.step(t, a, p, impl),
                                     [tokens.clone(), positions.clone()])
                out = graph.replay()
                torch.cuda.synchronize()
                err = rel_err(out.logits, ref_logits)
                agree = float((out.tokens == ref_tokens).float().mean())
                t = time_replays(graph.graph.replay, 1, repeats, barrier=barrier)
                del graph
                per_rank = _gather_floats([t["ms"]], group, dev)
                results.append(StepTiming(
                    "model", spec.name, method, impl, batch, context, tp, max(per_rank),
                    t["ms_min"], t["ms_p90"], nbytes, copy_gbps,
                    {"per_rank_ms": per_rank, "logits_rel_err": err, "tokens_agree": agree,
                     "layers": len(model.layers)}))
        del attends
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    del model
    torch.cuda.empty_cache()
    return results


def _gather_floats(values: list[float], group, device) -> list[float]:
    """All ranks' values (one per rank when each gives one); ``values`` without a group."""
    import torch
    import torch.distributed as dist

    if group is None:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    out = torch.empty(dist.get_world_size(group) * len(values), dtype=torch.float64,
                      device=device)
    dist.all_gather_into_tensor(out, t, group=group)
    return out.cpu().tolist()


@dataclass
class TpLayerTiming:
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

    model: str
    method: str
    impl: str
    batch: int
    context: int
    tp: int
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
    return t["ms"]


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


def tp_layer_timing(model_name: str, method: str, batch: int, context: int, tp: int,
                    rank: int, group, *, page_size: int = 16, topk_pages: int = 64,
                    impl: str = "fused", inner: int = 8, repeats: int = 30,
                    seed: int = 0, try_symm: bool = False) -> TpLayerTiming:
    """Time one layer at ``tp`` over ``group`` (call on every rank; same result on all).

    ``try_symm``: also time the step with :class:`OneShotAllReduce` all-reduces.
    """
    import torch
    import torch.distributed as dist

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

    tp1 = None
    if rank == 0:
        layer, attend = build(1, 0, None)
        tp1 = _graphed_layer_ms(layer, attend, hidden, positions, impl, inner, repeats, None)
        del layer, attend
        torch.cuda.empty_cache()
    barrier()
    layer, attend = build(tp, rank, group)
    step = _graphed_layer_ms(layer, attend, hidden, positions, impl, inner, repeats, barrier)
    layer.communicate = False
    nocomm = _graphed_layer_ms(layer, attend, hidden, positions, impl, inner, repeats, barrier)
    layer.communicate = True
    piece_gpu, piece_host = _piecewise_ms(layer, attend, hidden, positions, 50, barrier)
    partial = torch.randn(batch, spec.hidden_size, dtype=dtype, device=dev)

    def reduce_only():
        for _ in range(inner):
            for _ in range(2):
                dist.all_reduce(partial, group=group)
    graph = capture_graph(reduce_only)
    partial.normal_()
    comm = time_replays(graph.replay, inner, repeats, barrier=barrier)["ms"]
    del graph
    symm_step = symm_comm = float("nan")
    symm_error = None if try_symm else "not tried"
    try:
        if not try_symm:
            raise _Skipped
        reducer = OneShotAllReduce(group, (batch, spec.hidden_size), dtype, dev)
        layer.all_reduce = reducer.layer_hook(layer)
        symm_step = _graphed_layer_ms(layer, attend, hidden, positions, impl, inner, repeats,
                                      barrier)

        def symm_only():
            for _ in range(2 * inner):
                reducer(partial)
        graph = capture_graph(symm_only)
        partial.normal_()
        symm_comm = time_replays(graph.replay, inner, repeats, barrier=barrier)["ms"]
        del graph
    except _Skipped:
        pass
    except Exception as exc:  # noqa: BLE001 - an optional path; the NCCL numbers stand
        symm_error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        layer.__dict__.pop("all_reduce", None)
    rows = _gather_floats([step, nocomm, comm, piece_gpu, piece_host, tp1 or 0.0, symm_step,
                           symm_comm], group, dev)
    table = [rows[i:i + 8] for i in range(0, len(rows), 8)]

    def worst(i: int) -> float:
        return max(r[i] for r in table)
    symm_ok = not any(math.isnan(r[6]) or math.isnan(r[7]) for r in table)
    return TpLayerTiming(spec.name, method, impl, batch, context, tp, worst(0), worst(1),
                         worst(2), table[0][5] or None, worst(3), worst(4),
                         [r[0] for r in table], worst(6) if symm_ok else None,
                         worst(7) if symm_ok else None, symm_error)


class _Skipped(Exception):
    pass


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
