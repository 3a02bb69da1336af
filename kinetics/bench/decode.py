"""GPU decode benchmark: dense vs block top-k attention (optionally inside one decoder layer).

The setup follows the paper's benchmark: one decoder layer of a model sharded n-way
tensor parallel, simulated on one GPU (this rank's heads: ``num_q_heads / tp`` query
heads, ``num_kv_heads / tp`` KV heads, at least 1), a batch of requests each holding
``context`` tokens in a paged bf16 KV cache (random pages, standard-normal K/V), one
new query token per request per step.

Timing: every step is captured in a CUDA graph that cycles through ``replicas``
independent caches and queries (so the block top-k working set, ~48 MB per replica
at the standard size, is not served from the 50 MB L2), after eager warm-up runs
(JIT, autotuning); each graph replay is timed with CUDA events and the result is the
median over ``repeats`` replays divided by the steps in the graph. A device-to-device
copy of 1 GiB is timed in the same run (bytes read + written) and achieved bandwidth
is reported as a fraction of it.

Bytes counted (the fewest a step must move): dense reads all K and V of the context;
block top-k reads the page means of the candidate pages (selection) plus K and V of
the ``topk_pages`` selected pages; both read q and write the output; the layer mode
adds the layer's weights.

Decoder-layer mode (``attention_only=False``) runs ``cfg.layer_impl``: ``fused``
(default: :func:`kinetics.model.fused.fused_layer_step`, the non-attention path in
4 Triton kernels + 4 GEMMs, k/v written by the RoPE kernel) or ``reference`` (the
layer's torch forward), each step in the one CUDA graph; the in-run check adds the
implementation's output vs the reference layer's (``layer_rel_errs``).

Public API (also for asv GPU benchmarks): :func:`gpu_available`,
:func:`measure_decode`, :func:`compare_decode` (a :class:`DecodeComparison`), built
from :func:`build_workload`, :func:`check_method`, :func:`decode_steps` and
:func:`measure_method`; the gate is :mod:`kinetics.bench.gate`, the timer
:mod:`kinetics.bench.timing`.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kinetics.errors import InputError
from kinetics.model.parallel import shard_plan
from kinetics.models import ModelSpec, get_model

if TYPE_CHECKING:
    from kinetics.attention.checks import SelectionCheck

BENCH_METHODS: tuple[str, ...] = ("dense", "blocktopk")
# dense: flashinfer paged decode (tensor cores, fa2, unless use_tensor_cores=False).
# blocktopk: block top-k decode (kinetics.attention.decode.build_blocktopk_decode,
# blocktopk_impl: the fused one-kernel step by default; "separate": Triton scoring + the
# topk_kernel top-k, then the Triton split-KV decode over the selected pages).
SPEEDUP_KEYS = {"blocktopk": "speedup"}
TOPK_KERNELS: tuple[str, ...] = ("auto", "bitonic", "flashinfer")
BLOCKTOPK_IMPLS: tuple[str, ...] = ("auto", "fused", "separate")
REL_TOL = 1e-2  # bf16 GPU output vs float32 reference, ||out - ref|| / ||ref||
# decoder-layer mode: the layer's reference forward, or the fused path (kinetics.model.fused;
# fused-kv-separate leaves the cache writes to the attend; compiled: torch.compile of the
# reference pieces around attention)
LAYER_IMPLS: tuple[str, ...] = ("fused", "reference", "fused-kv-separate", "compiled")


def gpu_available() -> tuple[bool, str]:
    """(True, device name) if a CUDA GPU, triton and flashinfer are usable, else (False, why)."""
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU is visible to torch"
    for module in ("triton", "flashinfer"):
        if importlib.util.find_spec(module) is None:
            return False, f"{module} is not installed"
    return True, torch.cuda.get_device_name()


def local_heads(model: ModelSpec, tp: int) -> tuple[int, int]:
    """(query heads, KV heads) one rank of ``tp``-way tensor parallelism holds
    (:func:`kinetics.model.parallel.shard_plan`; InputError if ``tp`` does not fit)."""
    plan = shard_plan(model, tp, 0)
    return plan.local_q_heads, plan.local_kv_heads


@dataclass
class BenchConfig:
    """One benchmark configuration (sizes in tokens, pages and requests)."""

    model: str = "qwen3-8b"
    context: int = 16384
    batch_size: int = 64
    page_size: int = 16
    topk_pages: int = 64
    tp: int = 8
    attention_only: bool = True
    local_pages: int = 1
    replicas: int = 4
    repeats: int = 100
    use_tensor_cores: bool = True
    topk_kernel: str = "auto"
    seed: int = 0
    layer_impl: str = "fused"
    blocktopk_impl: str = "auto"
    page_means_dtype: str = "bf16"

    def validate(self) -> ModelSpec:
        """Check the sizes; returns the model spec (InputError on bad input)."""
        model = get_model(self.model)
        if self.context < 1 or self.batch_size < 1:
            raise InputError("--context and --batch-size must be >= 1")
        if self.page_size < 1 or self.page_size & (self.page_size - 1):
            raise InputError(f"--page-size must be a power of two, got {self.page_size}")
        pages = -(-self.context // self.page_size)
        if not 1 <= self.local_pages <= self.topk_pages <= pages:
            raise InputError(f"need 1 <= local pages ({self.local_pages}) <= --topk-pages "
                             f"({self.topk_pages}) <= pages of the context ({pages})")
        if self.replicas < 1 or self.repeats < 1:
            raise InputError("replicas and repeats must be >= 1")
        if self.topk_kernel not in TOPK_KERNELS:
            raise InputError(f"--topk must be one of {', '.join(TOPK_KERNELS)}, "
                             f"got {self.topk_kernel!r}")
        if self.blocktopk_impl not in BLOCKTOPK_IMPLS:
            raise InputError(f"--impl must be one of {', '.join(BLOCKTOPK_IMPLS)}, "
                             f"got {self.blocktopk_impl!r}")
        from kinetics.attention.cache import page_means_dtype

        page_means_dtype(self.page_means_dtype)
        if self.layer_impl not in LAYER_IMPLS:
            raise InputError(f"unknown layer implementation '{self.layer_impl}' (choose from "
                             f"{', '.join(LAYER_IMPLS)})")
        local_heads(model, self.tp)
        return model


@dataclass
class _Bytes:
    kv: float = 0.0
    selection: float = 0.0
    io: float = 0.0
    weights: float = 0.0

    @property
    def total(self) -> float:
        return self.kv + self.selection + self.io + self.weights


def _step_bytes(cfg: BenchConfig, hq: int, hkv: int, d: int, method: str, weight_bytes: float,
                elem: int = 2) -> _Bytes:
    """Fewest bytes one decode step moves through device memory."""
    b = cfg.batch_size
    io = 2 * b * hq * d * elem  # q in, out
    if method == "dense":
        kv = 2 * b * hkv * cfg.context * d * elem
        return _Bytes(kv=kv, io=io, weights=weight_bytes)
    pages = -(-cfg.context // cfg.page_size)
    kv = 2 * b * hkv * cfg.topk_pages * cfg.page_size * d * elem
    mean = {"fp8": 1, "bf16": 2, "fp32": 4}[cfg.page_means_dtype]
    sel = b * hkv * (pages - cfg.local_pages) * (d * mean + 4)  # page means + table
    return _Bytes(kv=kv, selection=sel, io=io, weights=weight_bytes)


def rel_err(out, ref) -> float:
    """||out - ref|| / ||ref|| in float32."""
    import torch

    out, ref = out.to(torch.float32), ref.to(torch.float32)
    return float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref))


def make_decoder(method: str, cache, num_q_heads: int, cfg: BenchConfig):
    """The decoder ``method`` times on ``cache`` (one of :data:`BENCH_METHODS`)."""
    from kinetics.attention.decode import FlashinferDenseDecode, build_blocktopk_decode

    if method not in BENCH_METHODS:
        raise InputError(f"unknown method {method!r} (choose from {', '.join(BENCH_METHODS)})")
    if method == "dense":
        return FlashinferDenseDecode(cache, num_q_heads, cfg.use_tensor_cores)
    return build_blocktopk_decode(cache, num_q_heads, cfg.topk_pages, cfg.local_pages,
                                  topk=cfg.topk_kernel, impl=cfg.blocktopk_impl)


class FixedSlotAttend:
    """An ``attend(q, k, v)`` that writes the new token's K/V over each request's last
    cached token, then runs ``decode(q, out)``: the KV length stays fixed, so the
    planned kernels (and a CUDA graph of the step) stay valid for any number of steps.

    ``slot`` (a :class:`kinetics.model.fused.PagedSlot`) tells the fused layer where
    k and v go, so its q/k norm + RoPE kernel writes them itself and then calls
    ``cached(q)``.
    """

    def __init__(self, cache, decode, out) -> None:
        from kinetics.model.fused import PagedSlot

        last = cache.seq_lens.long() - 1
        pages = cache.page_table.gather(1, (last // cache.page_size)[:, None].to(
            cache.page_table.dtype)).squeeze(1).long()
        slots = last % cache.page_size
        if bool((slots == slots[0]).all()):
            slots = int(slots[0])  # one slot for all: plain indexing (and the fused write)
        self.slot = PagedSlot(cache.k_pages, cache.v_pages, pages, slots)
        self.decode, self.out = decode, out

    def cached(self, q):
        """Attention of q [batch, q_heads, head_dim] over the cache (token already stored)."""
        return self.decode(q.contiguous(), self.out)

    def __call__(self, q, k, v):
        self.slot.write(k, v)
        return self.cached(q)


def random_paged_attend(method: str, batch: int, q_heads: int, kv_heads: int, head_dim: int,
                        context: int, page_size: int, topk_pages: int, *, dtype, device,
                        seed: int = 0, local_pages: int = 1,
                        use_tensor_cores: bool = True) -> FixedSlotAttend:
    """A :class:`FixedSlotAttend` for one shard's heads: its own paged cache of
    ``context`` random tokens per request (``PagedKVCache.random``, ``seed``) and the
    ``method`` decoder of :func:`make_decoder` (``topk_pages`` pages of ``page_size``
    tokens for block top-k). Used by the layer, model and tensor-parallel benchmarks."""
    import torch

    from kinetics.attention.cache import PagedKVCache

    if context < 1:
        raise InputError("the paged attention needs context >= 1")
    cache = PagedKVCache.random(batch, kv_heads, head_dim, context, page_size=page_size,
                                dtype=dtype, device=device, seed=seed)
    cfg = BenchConfig(context=context, batch_size=batch, page_size=page_size,
                      topk_pages=topk_pages, local_pages=local_pages,
                      use_tensor_cores=use_tensor_cores)
    out = torch.empty(batch, q_heads, head_dim, dtype=dtype, device=device)
    return FixedSlotAttend(cache, make_decoder(method, cache, q_heads, cfg), out)


def layer_step_fn(layer, impl: str) -> Callable:
    """``step(hidden, attend, positions) -> output`` of ``layer`` (one of LAYER_IMPLS)."""
    from kinetics.model.fused import fused_layer_step

    if impl == "reference":
        return layer
    if impl in ("fused", "fused-kv-separate"):
        def fused(hidden, attend, positions):
            delta, h = fused_layer_step(layer, None, hidden, attend, positions,
                                        fuse_kv_write=impl == "fused")
            return delta + h
        return fused
    if impl == "compiled":
        import torch

        pre = torch.compile(layer.pre_attention, fullgraph=True, dynamic=False)

        def post(hidden, attn):
            h = hidden + layer.all_reduce(layer.post_attention(attn))
            return h + layer.all_reduce(layer.mlp_partial(h))

        post_c = torch.compile(post, fullgraph=True, dynamic=False)

        def compiled(hidden, attend, positions):
            return post_c(hidden, attend(*pre(hidden, positions)))
        return compiled
    raise InputError(f"unknown layer implementation '{impl}' (choose from "
                     f"{', '.join(LAYER_IMPLS)})")


@dataclass
class DecodeWorkload:
    """Inputs every method runs on: ``replicas`` caches, queries, outputs (and, for the
    decoder-layer mode, the layer shard, its inputs and weight bytes)."""

    caches: list
    queries: list
    outs: list
    q_heads: int
    kv_heads: int
    head_dim: int
    layer: Any = None
    hiddens: list = field(default_factory=list)
    positions: Any = None
    weight_bytes: float = 0.0


def build_workload(cfg: BenchConfig, model: ModelSpec) -> DecodeWorkload:
    """Random caches and queries (seeded by ``cfg.seed``) for ``cfg`` on the GPU."""
    import torch

    from kinetics.attention.cache import PagedKVCache, page_means_dtype

    plan = shard_plan(model, cfg.tp, 0)
    hq, hkv, d = plan.local_q_heads, plan.local_kv_heads, model.head_dim
    dtype = torch.bfloat16
    gen = torch.Generator(device="cuda").manual_seed(cfg.seed)
    w = DecodeWorkload([], [], [], hq, hkv, d)
    for i in range(cfg.replicas):
        w.caches.append(PagedKVCache.random(cfg.batch_size, hkv, d, cfg.context,
                                            page_size=cfg.page_size, dtype=dtype, device="cuda",
                                            seed=cfg.seed + i, generator=gen,
                                            page_means_dtype=page_means_dtype(
                                                cfg.page_means_dtype)))
        w.queries.append(torch.randn((cfg.batch_size, hq, d), dtype=dtype, device="cuda",
                                     generator=gen))
        w.outs.append(torch.empty((cfg.batch_size, hq, d), dtype=dtype, device="cuda"))
    if not cfg.attention_only:
        from kinetics.model.layer import ShardedDecoderLayer

        w.layer = ShardedDecoderLayer(model, tp_size=cfg.tp, tp_rank=0, dtype=dtype,
                                      device="cuda", seed=cfg.seed)
        w.weight_bytes = float(sum(p.numel() * p.element_size() for p in w.layer.parameters()))
        w.hiddens = [torch.randn((cfg.batch_size, model.hidden_size), dtype=dtype,
                                 device="cuda", generator=gen) for _ in range(cfg.replicas)]
        w.positions = torch.full((cfg.batch_size,), cfg.context - 1, dtype=torch.int64,
                                 device="cuda")
    return w


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


def check_method(method: str, decoder, w: DecodeWorkload, cfg: BenchConfig,
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
        selection = check_selection(got, q0, c0, cfg.topk_pages, cfg.local_pages)
    if compare_output:
        ref = (reference.dense_decode(q0, c0) if got is None else
               reference.blocktopk_decode(q0, c0, cfg.topk_pages, cfg.local_pages, page_mask=got))
        err = rel_err(o0, ref)
    passed = (written and (not compare_output or err < REL_TOL)
              and (selection is None or selection.passed))
    return MethodCheck(written, err, passed, selection)


def check_layer(decoder, w: DecodeWorkload, cfg: BenchConfig) -> float:
    """||impl - reference|| / ||reference|| of one eager decoder-layer step on replica 0
    (``cfg.layer_impl`` vs the layer's reference forward, same inputs and cache)."""
    import torch

    attend = FixedSlotAttend(w.caches[0], decoder, w.outs[0])
    with torch.inference_mode():
        ref = w.layer(w.hiddens[0], attend, w.positions).clone()
        out = layer_step_fn(w.layer, cfg.layer_impl)(w.hiddens[0], attend, w.positions)
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


@dataclass(frozen=True)
class MethodTiming:
    """One method's step time and the rates derived from it.

    ms_per_step (ms), tokens_per_s (tokens/s), bytes_per_step (bytes), gbytes_per_s
    (1e9 bytes/s), fraction_of_copy (of the measured copy bandwidth); block top-k
    attention-only with the separate path adds its selection and sparse-attention
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


def time_steps(w: DecodeWorkload, decoders: list, cfg: BenchConfig, only: str | None = None,
               layer_impl: str = "fused"):
    """Time ``decoders`` (one per replica) as a CUDA graph of 2 rounds over the replicas
    (:func:`decode_steps`; ``only`` as there): a ``GraphTiming``, ms per step."""
    from kinetics.bench.timing import time_graph

    rounds = 2
    return time_graph(decode_steps(w, decoders, rounds, only, layer_impl),
                      rounds * cfg.replicas, cfg.repeats)


def measure_method(method: str, decoders: list, w: DecodeWorkload, cfg: BenchConfig,
                   copy_gbps: float) -> MethodTiming:
    """The full step of ``decoders`` timed (:func:`time_steps`), its bytes and rates;
    the separate block top-k path, attention alone, also times its selection and
    attention launches."""
    t = time_steps(w, decoders, cfg, layer_impl=cfg.layer_impl)
    nbytes = _step_bytes(cfg, w.q_heads, w.kv_heads, w.head_dim, method, w.weight_bytes)
    rate = nbytes.total / (t.ms * 1e-3) / 1e9
    parts: dict[str, float] = {}
    if method != "dense" and w.layer is None and hasattr(decoders[0], "select"):
        sel = time_steps(w, decoders, cfg, "select").ms
        att = time_steps(w, decoders, cfg, "attend").ms
        parts = dict(selection_ms=sel, sparse_attention_ms=att,
                     selection_gbytes_per_s=nbytes.selection / (sel * 1e-3) / 1e9,
                     sparse_attention_gbytes_per_s=(nbytes.kv + nbytes.io) / (att * 1e-3) / 1e9)
    return MethodTiming(t.ms, t.ms_min, t.ms_p90, cfg.batch_size / (t.ms * 1e-3), nbytes.total,
                        rate, rate / copy_gbps, **parts)


@dataclass
class DecodeComparison:
    """Every number of one :func:`compare_decode` run (``to_dict`` for JSON).

    speedups: ``speedup`` (dense ms / block top-k ms, selection included), when both
    ran; roofline_speedup: the byte ratio dense / block top-k.
    """

    device: str
    date: str
    torch: str
    config: BenchConfig
    local_q_heads: int
    local_kv_heads: int
    head_dim: int
    copy_gbps: float
    methods: dict[str, MethodTiming] = field(default_factory=dict)
    checks: dict[str, MethodCheck] = field(default_factory=dict)
    speedups: dict[str, float] = field(default_factory=dict)
    roofline_speedup: float | None = None
    layer_rel_errs: dict[str, float] = field(default_factory=dict)

    @property
    def checks_passed(self) -> bool:
        return (all(c.passed for c in self.checks.values())
                and all(e < REL_TOL for e in self.layer_rel_errs.values()))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device": self.device, "date": self.date, "torch": self.torch,
            "config": asdict(self.config), "local_q_heads": self.local_q_heads,
            "local_kv_heads": self.local_kv_heads, "head_dim": self.head_dim,
            "copy_gbps": self.copy_gbps,
            "methods": {k: m.to_dict() for k, m in self.methods.items()},
            "checks": {k: c.to_dict() for k, c in self.checks.items()}, **self.speedups}
        if self.layer_rel_errs:
            out["layer_rel_err_vs_reference"] = dict(self.layer_rel_errs)
        if self.roofline_speedup is not None:
            out["roofline_speedup"] = self.roofline_speedup
        return {**out, "checks_passed": self.checks_passed}


def compare_decode(cfg: BenchConfig, methods: tuple[str, ...] = BENCH_METHODS,
                   check: bool = True, copy_gbps: float | None = None) -> DecodeComparison:
    """Time ``methods`` on the same caches in one run (and check each, unless ``check``
    is False). Needs a CUDA GPU with triton and flashinfer (InputError otherwise)."""
    import torch

    from kinetics.bench.timing import copy_bandwidth

    model = cfg.validate()
    for method in methods:
        if method not in BENCH_METHODS:
            raise InputError(f"unknown method {method!r} (choose from {', '.join(BENCH_METHODS)})")
    ok, why = gpu_available()
    if not ok:
        raise InputError(f"no GPU benchmark possible: {why}")
    if copy_gbps is None:
        copy_gbps = copy_bandwidth()
    w = build_workload(cfg, model)
    result = DecodeComparison(
        torch.cuda.get_device_name(),
        _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), torch.__version__,
        cfg, w.q_heads, w.kv_heads, w.head_dim, copy_gbps)
    for method in methods:
        decoders = [make_decoder(method, c, w.q_heads, cfg) for c in w.caches]
        if check:
            result.checks[method] = check_method(method, decoders[0], w, cfg)
            if w.layer is not None:
                result.layer_rel_errs[method] = check_layer(decoders[0], w, cfg)
        result.methods[method] = measure_method(method, decoders, w, cfg, copy_gbps)
        del decoders
        torch.cuda.synchronize()
    dense = result.methods.get("dense")
    for name, key in SPEEDUP_KEYS.items():
        if dense is not None and name in result.methods:
            sparse = result.methods[name]
            result.speedups[key] = dense.ms_per_step / sparse.ms_per_step
            result.roofline_speedup = dense.bytes_per_step / sparse.bytes_per_step
    return result


def measure_decode(model: str = "qwen3-8b", method: str = "blocktopk", context: int = 16384,
                   batch_size: int = 64, page_size: int = 16, topk_pages: int = 64, tp: int = 8,
                   attention_only: bool = True, **options: Any) -> MethodTiming:
    """Time one method (no correctness check); see :class:`MethodTiming`.
    ``options`` go to :class:`BenchConfig` (replicas, repeats, local_pages, ...)."""
    cfg = BenchConfig(model=model, context=context, batch_size=batch_size, page_size=page_size,
                      topk_pages=topk_pages, tp=tp, attention_only=attention_only, **options)
    return compare_decode(cfg, (method,), check=False).methods[method]


def format_table(result: DecodeComparison) -> str:
    """A short plain-text table of a :func:`compare_decode` result."""
    cfg = result.config
    lines = [
        f"{result.device}  {result.date}  copy {result.copy_gbps:.0f} GB/s",
        f"{cfg.model} tp{cfg.tp} ({result.local_q_heads} q / {result.local_kv_heads} "
        f"kv heads, d {result.head_dim})  context {cfg.context}  batch {cfg.batch_size}"
        f"  {cfg.topk_pages} pages of {cfg.page_size}  "
        f"{'attention only' if cfg.attention_only else 'decoder layer'}",
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
    if "speedup" in result.speedups:
        speedup = result.speedups["speedup"]
        lines.append(f"speedup blocktopk over dense: {speedup:.2f}x (byte roofline "
                     f"{result.roofline_speedup:.2f}x, "
                     f"{speedup / result.roofline_speedup:.0%} of it)")
    return "\n".join(lines)
