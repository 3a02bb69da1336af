"""GPU timing of the whole-model decode step (one GPU, or tensor parallel).

:func:`model_timings` records a whole step as ONE CUDA graph (:class:`CapturedStep`):
embedding, every layer's non-attention work (``impl``, one of
:data:`kinetics.bench.decode.LAYER_IMPLS`: the fused path by default), each layer's
paged attention (the new token overwrites the last cached slot, so shapes stay
fixed), under tensor parallelism the NCCL all-reduces, final norm, LM head and greedy
sampling; results are :class:`StepTiming` dataclasses. :func:`layer_attend` also
serves the whole-step TP layer timing in :mod:`kinetics.bench.tp`; one layer on one
GPU is ``kinetics.bench.decode``.
Needs CUDA, triton and flashinfer; torch imports lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kinetics.bench.timing import TimedCell, capture_graph, copy_bandwidth, time_replays
from kinetics.model.parallel import gather_rows
from kinetics.models import get_model


@dataclass
class StepTiming(TimedCell):
    """One timed decode step (per GPU).

    Attributes:
        model, method, impl, batch, context, tp: the configuration (:class:`TimedCell`).
        scope: 'layer' (one layer shard) or 'model' (all layers, embedding, LM head).
        ms, ms_min, ms_p90: median / min / 90th percentile ms per step over replays.
        bytes_per_step: fewest bytes a step moves (weights once, KV or selected pages).
        copy_gbps: device-to-device copy bandwidth of the same run, GB/s.
        extra: further numbers (per-rank ms, no-communication ms, checks).
    """

    scope: str
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


def layer_attend(layer, method: str, batch: int, context: int, page_size: int,
                 topk_pages: int, seed: int = 0):
    """A paged attend for one layer shard: its own cache of ``context`` random tokens
    for the layer's KV heads (seed offset by its first KV head), and the ``method``
    decoder (:func:`kinetics.bench.decode.random_paged_attend`)."""
    from kinetics.bench.decode import random_paged_attend

    return random_paged_attend(method, batch, layer.local_q_heads, layer.local_kv_heads,
                               layer.head_dim, context, page_size, topk_pages,
                               dtype=layer.dtype, device=layer.qkv_proj.device,
                               seed=seed + layer.kv_head_start)


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

    from kinetics.bench.decode import rel_err
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
                per_rank = [row[0] for row in gather_rows([t.ms], group, dev)]
                results.append(StepTiming(
                    spec.name, method, impl, batch, context, tp, "model", max(per_rank),
                    t.ms_min, t.ms_p90, nbytes, copy_gbps,
                    {"per_rank_ms": per_rank, "logits_rel_err": err, "tokens_agree": agree,
                     "layers": len(model.layers)}))
        del attends
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    del model
    torch.cuda.empty_cache()
    return results


def format_step_timings(timings: Sequence[StepTiming]) -> str:
    """A plain-text table of :class:`StepTiming` rows (one per method and impl)."""
    lines = [f"{'scope':<6} {'model':<10} {'method':<17} {'impl':<10} {'batch':>5} "
             f"{'context':>7} {'tp':>3} {'ms/step':>9} {'tokens/s':>10} {'of copy':>8}"]
    for t in timings:
        lines.append(f"{t.scope:<6} {t.model:<10} {t.method:<17} {t.impl:<10} {t.batch:>5} "
                     f"{t.context:>7} {t.tp:>3} {t.ms:>9.3f} {t.tokens_per_s:>10.0f} "
                     f"{100 * t.fraction_of_copy:>7.1f}%")
    return "\n".join(lines)
