"""Dense vs block top-k decode on one GPU: attention alone, or inside one decoder layer.

:func:`compare_decode` times the methods of :data:`kinetics.bench.spec.METHODS` on the
same :class:`~kinetics.bench.spec.DecodeSpec` workload in one run: one rank's shard
(the paper's benchmark simulates ``tp``-way tensor parallelism on one GPU), in one of
two scopes:

* ``"attention"``: the decode attention alone; block top-k on the separate kernels also
  has its selection launches and its sparse-attention launches timed alone (the fused
  one-kernel step has no such parts);
* ``"layer"``: rank 0's decoder-layer shard around the attention, run as
  ``layer_impl`` (:data:`kinetics.model.capture.LAYER_IMPLS`; ``fused`` by default);
  the in-run check adds its output against the reference layer's (``layer_rel_errs``).

Timing (:func:`time_steps`): every step captured in one CUDA graph that cycles through
the spec's ``replicas`` caches twice, after eager warm-up runs (JIT, autotuning); the
median over ``repeats`` replays divided by the steps in the graph. A 1 GiB
device-to-device copy timed in the same run (bytes read + written) is the bandwidth
each method's bytes per second are a fraction of. Bytes per step:
:meth:`DecodeSpec.step_bytes <kinetics.bench.spec.DecodeSpec.step_bytes>`, plus the
layer's weights in the layer scope.

Before timing, each method is checked once on replica 0 (:func:`check_method`): the
NaN-poisoned output fully written, the block top-k page selection against
``torch.topk`` up to ties, the output against the float32 reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kinetics.bench.spec import (
    METHODS,
    REL_TOL,
    DecodeSpec,
    DecodeWorkload,
    FixedSlotAttend,
    build_workload,
    check_methods,
    gpu_available,
    make_decoder,
    rel_err,
)
from kinetics.errors import InputError
from kinetics.model.capture import LAYER_IMPLS, layer_step_fn

if TYPE_CHECKING:
    from kinetics.attention.checks import SelectionCheck

SCOPES: tuple[str, ...] = ("layer", "attention")


@dataclass(frozen=True)
class MethodCheck:
    """One eager step on replica 0 (output poisoned with NaN first) vs the float32 reference."""

    all_written: bool
    rel_err: float
    passed: bool
    selection: SelectionCheck | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"all_written": self.all_written}
        if self.selection is not None:
            out["selection_identical_fraction"] = self.selection.identical_fraction
            out["selection_ok"] = self.selection.passed
        return {**out, "rel_err": self.rel_err, "passed": self.passed}


def check_method(method: str, decoder, w: DecodeWorkload, spec: DecodeSpec,
                 compare_output: bool = True) -> MethodCheck:
    """Correctness of ``decoder`` on replica 0: every output written, the page selection
    (block top-k) and, with ``compare_output``, the relative error of the output vs the
    float32 reference (which pads the whole cache in float32: the grid skips it for its
    largest cells; ``rel_err`` is then NaN)."""
    import torch

    from kinetics.attention import reference
    from kinetics.attention.checks import check_selection

    q0, c0, o0 = w.queries[0], w.caches[0], w.outs[0]
    o0.fill_(float("nan"))
    decoder(q0, o0)
    torch.cuda.synchronize()
    written = bool(torch.isfinite(o0).all())
    selection, err = None, float("nan")
    got = None if method == "dense" else decoder.selected_page_mask()
    if got is not None:
        selection = check_selection(got, q0, c0, spec.topk_pages, spec.local_pages)
    if compare_output:
        ref = (reference.dense_decode(q0, c0) if got is None else
               reference.blocktopk_decode(q0, c0, spec.topk_pages, spec.local_pages,
                                          page_mask=got))
        err = rel_err(o0, ref)
    passed = (written and (not compare_output or err < REL_TOL)
              and (selection is None or selection.passed))
    return MethodCheck(written, err, passed, selection)


def check_layer(decoder, w: DecodeWorkload, layer_impl: str) -> float:
    """||impl - reference|| / ||reference|| of one eager decoder-layer step on replica 0
    (``layer_impl`` vs the layer's reference forward, same inputs and cache)."""
    import torch

    attend = FixedSlotAttend(w.caches[0], decoder, w.outs[0])
    with torch.inference_mode():
        ref = w.layer(w.hiddens[0], attend, w.positions).clone()
        out = layer_step_fn(w.layer, layer_impl)(w.hiddens[0], attend, w.positions)
    return rel_err(out, ref)


def decode_steps(w: DecodeWorkload, decoders: list, rounds: int, only: str | None = None,
                 layer_impl: str = "fused") -> Callable[[], None]:
    """One graph's work: ``rounds`` passes over the replicas, each a full step (through
    the layer shard when there is one, as ``layer_impl``), or only the selection
    (``only="select"``) or only the sparse attention (``only="attend"``)."""
    attends = ([FixedSlotAttend(c, d, o) for c, d, o in zip(w.caches, decoders, w.outs,
                                                              strict=True)]
               if w.layer is not None else None)
    layer_step = layer_step_fn(w.layer, layer_impl) if w.layer is not None else None

    def step() -> None:
        for _ in range(rounds):
            for i, dec in enumerate(decoders):
                if attends is not None:
                    layer_step(w.hiddens[i], attends[i], w.positions)
                elif only == "select":
                    dec.select(w.queries[i])
                elif only == "attend":
                    dec.attend(w.queries[i], w.outs[i])
                else:
                    dec(w.queries[i], w.outs[i])
    return step


def time_steps(w: DecodeWorkload, decoders: list, repeats: int, only: str | None = None,
               layer_impl: str = "fused"):
    """Time ``decoders`` (one per replica) as a CUDA graph of 2 rounds over the replicas
    (:func:`decode_steps`; ``only`` as there): a ``GraphTiming``, ms per step."""
    from kinetics.bench.timing import time_graph

    rounds = 2
    return time_graph(decode_steps(w, decoders, rounds, only, layer_impl),
                      rounds * len(decoders), repeats)


@dataclass(frozen=True)
class MethodTiming:
    """One method's step time and the rates derived from it.

    ms_per_step (ms), tokens_per_s (tokens/s), bytes_per_step (bytes), gbytes_per_s
    (1e9 bytes/s), fraction_of_copy (of the measured copy bandwidth); block top-k
    attention alone on the separate kernels adds its selection and sparse-attention
    launches timed alone (the fused step has no such parts).
    """

    ms_per_step: float
    ms_min: float
    ms_p90: float
    tokens_per_s: float
    bytes_per_step: float
    gbytes_per_s: float
    fraction_of_copy: float
    selection_ms: float | None = None
    sparse_attention_ms: float | None = None
    selection_gbytes_per_s: float | None = None
    sparse_attention_gbytes_per_s: float | None = None

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def measure_method(method: str, decoders: list, w: DecodeWorkload, spec: DecodeSpec,
                   repeats: int, layer_impl: str, copy_gbps: float) -> MethodTiming:
    """The full step of ``decoders`` timed (:func:`time_steps`), its bytes and rates;
    the separate block top-k path, attention alone, also times its selection and
    attention launches."""
    t = time_steps(w, decoders, repeats, layer_impl=layer_impl)
    nbytes = spec.step_bytes(method, w.weight_bytes)
    rate = nbytes.total / (t.ms * 1e-3) / 1e9
    parts: dict[str, float] = {}
    if method != "dense" and w.layer is None and hasattr(decoders[0], "select"):
        sel = time_steps(w, decoders, repeats, "select").ms
        att = time_steps(w, decoders, repeats, "attend").ms
        parts = dict(selection_ms=sel, sparse_attention_ms=att,
                     selection_gbytes_per_s=nbytes.selection / (sel * 1e-3) / 1e9,
                     sparse_attention_gbytes_per_s=nbytes.attention / (att * 1e-3) / 1e9)
    return MethodTiming(t.ms, t.ms_min, t.ms_p90, spec.batch_size / (t.ms * 1e-3),
                        nbytes.total, rate, rate / copy_gbps, **parts)


@dataclass
class DecodeComparison:
    """Every number of one :func:`compare_decode` run (``to_dict`` for JSON).

    speedup: dense ms / block top-k ms (selection included) when both ran;
    roofline_speedup: the byte ratio dense / block top-k; blocktopk_impl: the block
    top-k implementation that ran (``fused`` or ``separate``; the spec's ``auto``
    resolved), None without block top-k.
    """

    environment: dict[str, Any]
    spec: DecodeSpec
    scope: str
    layer_impl: str
    repeats: int
    local_q_heads: int
    local_kv_heads: int
    head_dim: int
    copy_gbps: float
    methods: dict[str, MethodTiming] = field(default_factory=dict)
    checks: dict[str, MethodCheck] = field(default_factory=dict)
    layer_rel_errs: dict[str, float] = field(default_factory=dict)
    blocktopk_impl: str | None = None

    @property
    def speedup(self) -> float | None:
        if not {"dense", "blocktopk"} <= set(self.methods):
            return None
        return self.methods["dense"].ms_per_step / self.methods["blocktopk"].ms_per_step

    @property
    def roofline_speedup(self) -> float | None:
        if not {"dense", "blocktopk"} <= set(self.methods):
            return None
        return (self.methods["dense"].bytes_per_step
                / self.methods["blocktopk"].bytes_per_step)

    @property
    def checks_passed(self) -> bool:
        return (all(c.passed for c in self.checks.values())
                and all(e < REL_TOL for e in self.layer_rel_errs.values()))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "decode", **self.environment, "spec": self.spec.to_dict(),
            "scope": self.scope, "repeats": self.repeats,
            "local_q_heads": self.local_q_heads, "local_kv_heads": self.local_kv_heads,
            "head_dim": self.head_dim, "copy_gbps": self.copy_gbps,
            "methods": {k: m.to_dict() for k, m in self.methods.items()},
            "checks": {k: c.to_dict() for k, c in self.checks.items()}}
        if self.scope == "layer":
            out["layer_impl"] = self.layer_impl
            out["layer_rel_err_vs_reference"] = dict(self.layer_rel_errs)
        if self.blocktopk_impl is not None:
            out["blocktopk_impl"] = self.blocktopk_impl
        if self.speedup is not None:
            out.update(speedup=self.speedup, roofline_speedup=self.roofline_speedup)
        return {**out, "checks_passed": self.checks_passed}


def compare_decode(spec: DecodeSpec, methods: tuple[str, ...] = METHODS, *,
                   scope: str = "layer", layer_impl: str = "fused", repeats: int = 100,
                   check: bool = True, copy_gbps: float | None = None) -> DecodeComparison:
    """Time ``methods`` on the same caches in one run (and check each, unless ``check``
    is False). Needs a CUDA GPU with triton and flashinfer (InputError otherwise)."""
    import torch

    from kinetics.bench.timing import copy_bandwidth, environment

    spec.validate(check_methods(methods))
    if scope not in SCOPES:
        raise InputError(f"unknown scope '{scope}' (choose from {', '.join(SCOPES)})")
    if layer_impl not in LAYER_IMPLS:
        raise InputError(f"unknown layer implementation '{layer_impl}' (choose from "
                         f"{', '.join(LAYER_IMPLS)})")
    if repeats < 1:
        raise InputError(f"--repeats must be >= 1, got {repeats}")
    ok, why = gpu_available()
    if not ok:
        raise InputError(f"no GPU benchmark possible: {why}")
    if copy_gbps is None:
        copy_gbps = copy_bandwidth()
    w = build_workload(spec, with_layer=scope == "layer")
    result = DecodeComparison(environment(), spec, scope, layer_impl, repeats, w.q_heads,
                              w.kv_heads, w.head_dim, copy_gbps)
    for method in methods:
        decoders = [make_decoder(spec, method, c, w.q_heads) for c in w.caches]
        if method == "blocktopk":
            result.blocktopk_impl = "separate" if hasattr(decoders[0], "select") else "fused"
        if check:
            result.checks[method] = check_method(method, decoders[0], w, spec)
            if w.layer is not None:
                result.layer_rel_errs[method] = check_layer(decoders[0], w, layer_impl)
        result.methods[method] = measure_method(method, decoders, w, spec, repeats,
                                                layer_impl, copy_gbps)
        del decoders
        torch.cuda.synchronize()
    return result


def format_table(result: DecodeComparison) -> str:
    """A short plain-text table of a :func:`compare_decode` result."""
    spec, env = result.spec, result.environment
    scope = ("attention only" if result.scope == "attention"
             else f"decoder layer ({result.layer_impl})")
    lines = [
        f"{env['device']}  {env['date']}  copy {result.copy_gbps:.0f} GB/s",
        f"{spec.model_name} tp{spec.tp} ({result.local_q_heads} q / {result.local_kv_heads} "
        f"kv heads, d {result.head_dim})  context {spec.context}  batch {spec.batch_size}"
        f"  {spec.topk_pages} pages of {spec.page_size}  {scope}"
        + (f"  block top-k {result.blocktopk_impl}" if result.blocktopk_impl else "")
        + (f", {spec.page_means_dtype} page means" if spec.page_means_dtype != "bf16" else ""),
        f"{'method':<16} {'ms/step':>9} {'tokens/s':>11} {'GB/s':>8} {'of copy':>8}"
        f" {'select ms':>10} {'attn ms':>8} {'rel err':>9} {'check':>6}",
    ]

    def opt(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for name, m in result.methods.items():
        chk = result.checks.get(name)
        passed = "-" if chk is None else ("ok" if chk.passed else "FAIL")
        lines.append(f"{name:<16} {m.ms_per_step:>9.4f} {m.tokens_per_s:>11.0f} "
                     f"{m.gbytes_per_s:>8.0f} {100 * m.fraction_of_copy:>7.1f}% "
                     f"{opt(m.selection_ms, '.4f'):>10} {opt(m.sparse_attention_ms, '.4f'):>8} "
                     f"{opt(chk and chk.rel_err, '.2e'):>9} {passed:>6}")
    if result.speedup is not None:
        lines.append(f"speedup blocktopk over dense: {result.speedup:.2f}x (byte roofline "
                     f"{result.roofline_speedup:.2f}x, "
                     f"{result.speedup / result.roofline_speedup:.0%} of it)")
    return "\n".join(lines)
