"""The whole model's decode step timed as one CUDA graph (one GPU, or one rank of ``tp``).

:func:`model_timings` builds rank ``rank``'s shard of every layer of the spec's model
(:class:`kinetics.model.decoder.ShardedDecoderModel`) with one paged attend per layer
(:func:`kinetics.bench.spec.layer_attend`: the new token overwrites the last cached
slot, so shapes stay fixed) and records a whole step as ONE CUDA graph
(:class:`kinetics.model.capture.CapturedStep`): embedding, every layer (``impl``, one
of :data:`kinetics.model.capture.LAYER_IMPLS`), under tensor parallelism the NCCL
all-reduces, final norm, LM head and greedy sampling. Each layer holds its own cache,
so the spec's ``replicas`` do not apply here. Results are :class:`StepTiming` rows.
Needs CUDA, triton and flashinfer; torch imports lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kinetics.bench.spec import DecodeSpec, check_methods, layer_attend, rel_err
from kinetics.bench.timing import copy_bandwidth, time_replays
from kinetics.model.capture import LAYER_IMPLS, CapturedStep
from kinetics.model.parallel import gather_rows

LAYER_SEED_STRIDE = 1000  # cache seeds of consecutive layers


@dataclass
class StepTiming:
    """One timed decode step (per GPU).

    Attributes:
        spec: the workload; method: 'dense' or 'blocktopk'; impl: the layer implementation.
        scope: 'layer' (one layer shard) or 'model' (all layers, embedding, LM head).
        ms, ms_min, ms_p90: median / min / 90th percentile ms per step over replays.
        bytes_per_step: fewest bytes a step moves (weights once, KV or selected pages).
        copy_gbps: device-to-device copy bandwidth of the same run, GB/s.
        extra: further numbers (per-rank ms, checks).
    """

    spec: DecodeSpec
    method: str
    impl: str
    scope: str
    ms: float
    ms_min: float
    ms_p90: float
    bytes_per_step: float
    copy_gbps: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.spec.batch_size / (self.ms * 1e-3)

    @property
    def fraction_of_copy(self) -> float:
        return self.bytes_per_step / (self.ms * 1e-3) / 1e9 / self.copy_gbps

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON row: the spec's fields, then the method and the numbers."""
        return {**self.spec.to_dict(), "method": self.method, "impl": self.impl,
                "scope": self.scope, "ms": self.ms, "ms_min": self.ms_min,
                "ms_p90": self.ms_p90, "bytes_per_step": self.bytes_per_step,
                "copy_gbps": self.copy_gbps, "tokens_per_s": self.tokens_per_s,
                "fraction_of_copy": self.fraction_of_copy, "extra": self.extra}


def model_attends(model, spec: DecodeSpec, method: str) -> list:
    """One :func:`kinetics.bench.spec.layer_attend` per layer of ``model`` (a
    ShardedDecoderModel), cache seeds ``spec.seed + LAYER_SEED_STRIDE * i``."""
    return [layer_attend(spec, layer, method, spec.seed + LAYER_SEED_STRIDE * i)
            for i, layer in enumerate(model.layers)]


def model_step_bytes(model, spec: DecodeSpec, method: str) -> float:
    """Fewest bytes of one whole-model step on one rank: weights (the embedding's
    ``batch_size`` rows only), and per layer the KV (dense) or page means + selected
    pages (:meth:`DecodeSpec.step_bytes <kinetics.bench.spec.DecodeSpec.step_bytes>`)."""
    embed = model.embed_tokens
    row_bytes = embed.shape[1] * embed.element_size()
    weights = model.weight_bytes() - embed.shape[0] * row_bytes + spec.batch_size * row_bytes
    return weights + len(model.layers) * spec.step_bytes(method).total


def model_timings(spec: DecodeSpec, methods: Sequence[str], *,
                  layer_impls: Sequence[str] = ("fused",), repeats: int = 20, rank: int = 0,
                  group=None, copy_gbps: float | None = None, num_layers: int | None = None,
                  ) -> list[StepTiming]:
    """Time the whole-model decode step (one CUDA graph) per method and implementation.

    Rank ``rank`` of ``spec.tp``; call on every rank with the same arguments when
    ``group`` is a process group. ``extra`` holds ``per_rank_ms``, ``logits_rel_err`` and
    ``tokens_agree`` (this implementation's graphed step vs the eager reference step on
    the same inputs); ``ms`` is the slowest rank's.
    """
    import torch
    import torch.distributed as dist

    from kinetics.errors import InputError
    from kinetics.model.decoder import ShardedDecoderModel

    model_spec = spec.validate(check_methods(tuple(methods)))
    for impl in layer_impls:
        if impl not in LAYER_IMPLS:
            raise InputError(f"unknown layer implementation '{impl}' (choose from "
                             f"{', '.join(LAYER_IMPLS)})")
    dev = torch.device("cuda", torch.cuda.current_device())
    copy_gbps = copy_gbps or copy_bandwidth()
    model = ShardedDecoderModel(model_spec, spec.tp, rank, group, torch.bfloat16, dev,
                                spec.seed, num_layers)
    gen = torch.Generator(device=dev).manual_seed(spec.seed)
    tokens = torch.randint(0, model_spec.vocab_size, (spec.batch_size,), device=dev,
                           generator=gen)
    positions = torch.full((spec.batch_size,), spec.context - 1, dtype=torch.int64, device=dev)

    def barrier():
        if group is not None:
            dist.barrier(group=group)

    results = []
    for method in methods:
        attends = model_attends(model, spec, method)
        nbytes = model_step_bytes(model, spec, method)
        with torch.inference_mode():
            ref = model.step(tokens, attends, positions, impl="reference")
            ref_logits, ref_tokens = ref.logits.clone(), ref.tokens.clone()
            for impl in layer_impls:
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
                    spec, method, impl, "model", max(per_rank), t.ms_min, t.ms_p90, nbytes,
                    copy_gbps, {"per_rank_ms": per_rank, "logits_rel_err": err,
                                "tokens_agree": agree, "layers": len(model.layers)}))
        del attends
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    del model
    torch.cuda.empty_cache()
    return results


def format_step_timings(timings: Sequence[StepTiming]) -> str:
    """A plain-text table of :class:`StepTiming` rows (one per method and impl)."""
    lines = [f"{'scope':<6} {'model':<10} {'method':<10} {'impl':<10} {'batch':>5} "
             f"{'context':>7} {'tp':>3} {'ms/step':>9} {'tokens/s':>10} {'of copy':>8}"]
    for t in timings:
        s = t.spec
        lines.append(f"{t.scope:<6} {s.model_name:<10} {t.method:<10} {t.impl:<10} "
                     f"{s.batch_size:>5} {s.context:>7} {s.tp:>3} {t.ms:>9.3f} "
                     f"{t.tokens_per_s:>10.0f} {100 * t.fraction_of_copy:>7.1f}%")
    return "\n".join(lines)
