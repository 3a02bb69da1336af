"""The decode workload every GPU benchmark takes: :class:`DecodeSpec`, its byte model
(:meth:`DecodeSpec.step_bytes`) and the builders of its caches, decoders and attends.

A spec is one tensor-parallel rank's decode step: ``model`` sharded ``tp`` ways (this
rank holds ``num_q_heads / tp`` query heads and ``max(1, num_kv_heads / tp)`` KV heads,
:func:`kinetics.model.parallel.shard_plan`), ``batch_size`` requests each holding
``context`` tokens in a paged bf16 KV cache of ``page_size``-token pages (pages in
random physical order, standard-normal K/V), one new query token per request per step.

* dense attention reads every cached token: flashinfer's paged decode, on tensor cores
  (``dense_kernel="tensor-cores"``, the ``fa2`` backend) or CUDA cores;
* block top-k scores the page means of every candidate page (stored as
  ``page_means_dtype``: bf16, fp8 e4m3 or fp32), keeps ``topk_pages`` pages per
  (request, KV head) (the last ``local_pages`` always, the partial last page included)
  and attends those: ``blocktopk_impl`` ``"fused"`` in one kernel per step,
  ``"separate"`` as selection kernels (``topk_kernel`` picks the top-k kernel) then the
  sparse attention, ``"auto"`` the library default
  (:func:`kinetics.attention.decode.default_impl`).

``replicas`` independent caches are cycled by the benchmarks that time many steps of
one layer, so the working set of a step is not served from the L2 cache; ``seed``
seeds the random caches, queries and weights.

Validation and bytes need no torch; the builders (:func:`make_decoder`,
:func:`paged_attend`, :func:`layer_attend`, :func:`build_workload`) import torch,
triton and flashinfer lazily and need a CUDA GPU (:func:`gpu_available`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from kinetics.attention.cache import PAGE_MEANS_DTYPES
from kinetics.errors import InputError
from kinetics.model.parallel import shard_plan
from kinetics.models import ModelSpec, get_model

if TYPE_CHECKING:
    from kinetics.model.fused import PagedSlot

METHODS: tuple[str, ...] = ("dense", "blocktopk")
TOPK_KERNELS: tuple[str, ...] = ("auto", "bitonic", "flashinfer")
BLOCKTOPK_IMPLS: tuple[str, ...] = ("auto", "fused", "separate")
PAGE_MEAN_BYTES = {"bf16": 2, "fp8": 1, "fp32": 4}  # bytes per page-mean element
DENSE_KERNELS: tuple[str, ...] = ("tensor-cores", "cuda-cores")
ELEMENT_BYTES = 2  # bf16 K, V, q and output
REL_TOL = 1e-2  # bf16 GPU output vs float32 reference, ||out - ref|| / ||ref||


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


def check_methods(methods: tuple[str, ...]) -> tuple[str, ...]:
    """``methods`` if each is one of :data:`METHODS` and there is one at least (InputError)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"unknown method {unknown[0] if unknown else ''!r} "
                         f"(choose from {', '.join(METHODS)})")
    return methods


@dataclass(frozen=True)
class StepBytes:
    """The fewest bytes one decode step of one rank moves through device memory.

    kv: K and V read by the attention (every cached token, or the selected pages);
    selection: page means (``head_dim`` elements of the spec's page-means dtype) and the
    page table (4 bytes) of every candidate page read by the block top-k scoring; io: q read and output written;
    weights: the layer's (or model's) weights read once per step.
    """

    kv: float = 0.0
    selection: float = 0.0
    io: float = 0.0
    weights: float = 0.0

    @property
    def attention(self) -> float:
        """Bytes of the attention launches: K/V plus q and output."""
        return self.kv + self.io

    @property
    def total(self) -> float:
        return self.kv + self.selection + self.io + self.weights


@dataclass(frozen=True)
class DecodeSpec:
    """One rank's decode workload (sizes in tokens, pages and requests); see the module."""

    model: str | ModelSpec = "qwen3-8b"
    tp: int = 8
    context: int = 16384
    batch_size: int = 64
    page_size: int = 16
    topk_pages: int = 64
    local_pages: int = 1
    topk_kernel: str = "auto"
    blocktopk_impl: str = "auto"
    page_means_dtype: str = "bf16"
    dense_kernel: str = "tensor-cores"
    replicas: int = 4
    seed: int = 0

    def model_spec(self) -> ModelSpec:
        """The model: ``model`` itself, or the preset it names (InputError if none)."""
        return self.model if isinstance(self.model, ModelSpec) else get_model(self.model)

    @property
    def model_name(self) -> str:
        return self.model.name if isinstance(self.model, ModelSpec) else self.model

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (the model by name)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "model": self.model_name}

    @property
    def pages(self) -> int:
        """Pages of one request's context (the last one possibly partial)."""
        return -(-self.context // self.page_size)

    @property
    def budget_tokens(self) -> int:
        """Tokens block top-k attends per (request, KV head): ``topk_pages * page_size``."""
        return self.topk_pages * self.page_size

    @property
    def use_tensor_cores(self) -> bool:
        return self.dense_kernel == "tensor-cores"

    def validate(self, methods: tuple[str, ...] = METHODS) -> ModelSpec:
        """Check every field ``methods`` use (the block top-k ones only with
        ``blocktopk``); returns the model (InputError naming the flag)."""
        model = self.model_spec()
        if self.context < 1 or self.batch_size < 1:
            raise InputError("--context and --batch-size must be >= 1")
        if self.page_size < 1 or self.page_size & (self.page_size - 1):
            raise InputError(f"--page-size must be a power of two, got {self.page_size}")
        check_methods(methods)
        sparse = "blocktopk" in methods
        if sparse and not 1 <= self.local_pages <= self.topk_pages <= self.pages:
            raise InputError(f"need 1 <= --local-pages ({self.local_pages}) <= --topk-pages "
                             f"({self.topk_pages}) <= pages of the context ({self.pages})")
        if sparse and self.topk_kernel not in TOPK_KERNELS:
            raise InputError(f"--topk must be one of {', '.join(TOPK_KERNELS)}, "
                             f"got {self.topk_kernel!r}")
        if sparse and self.blocktopk_impl not in BLOCKTOPK_IMPLS:
            raise InputError(f"--impl must be one of {', '.join(BLOCKTOPK_IMPLS)}, "
                             f"got {self.blocktopk_impl!r}")
        if sparse and self.page_means_dtype not in PAGE_MEANS_DTYPES:
            raise InputError(f"--page-means-dtype must be one of "
                             f"{', '.join(PAGE_MEANS_DTYPES)}, got {self.page_means_dtype!r}")
        if self.replicas < 1:
            raise InputError(f"--replicas must be >= 1, got {self.replicas}")
        if self.dense_kernel not in DENSE_KERNELS:
            raise InputError(f"dense kernel must be one of {', '.join(DENSE_KERNELS)}, "
                             f"got {self.dense_kernel!r}")
        shard_plan(model, self.tp, 0)  # InputError if tp does not divide the heads
        return model

    def local_heads(self) -> tuple[int, int]:
        """(query heads, KV heads) one rank holds (InputError if ``tp`` does not fit)."""
        plan = shard_plan(self.model_spec(), self.tp, 0)
        return plan.local_q_heads, plan.local_kv_heads

    def step_bytes(self, method: str, weight_bytes: float = 0.0) -> StepBytes:
        """Fewest bytes one decode step of ``method`` moves on one rank (attention, plus
        ``weight_bytes`` of weights read once)."""
        check_methods((method,))
        hq, hkv = self.local_heads()
        d, b, elem = self.model_spec().head_dim, self.batch_size, ELEMENT_BYTES
        io = 2 * b * hq * d * elem
        if method == "dense":
            return StepBytes(kv=2 * b * hkv * self.context * d * elem, io=io,
                             weights=weight_bytes)
        kv = 2 * b * hkv * self.budget_tokens * d * elem
        mean = PAGE_MEAN_BYTES[self.page_means_dtype]
        selection = b * hkv * (self.pages - self.local_pages) * (d * mean + 4)
        return StepBytes(kv=kv, selection=selection, io=io, weights=weight_bytes)


def rel_err(out, ref) -> float:
    """||out - ref|| / ||ref|| in float32."""
    import torch

    out, ref = out.to(torch.float32), ref.to(torch.float32)
    return float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref))


def make_decoder(spec: DecodeSpec, method: str, cache, num_q_heads: int):
    """The ``method`` decoder of ``spec`` over ``cache`` (``decoder(q, out)``): flashinfer
    dense on ``spec.dense_kernel``, or block top-k with ``spec.topk_pages``,
    ``spec.local_pages``, ``spec.blocktopk_impl`` and ``spec.topk_kernel``."""
    from kinetics.attention.decode import FlashinferDenseDecode, build_blocktopk_decode

    check_methods((method,))
    if method == "dense":
        return FlashinferDenseDecode(cache, num_q_heads, spec.use_tensor_cores)
    return build_blocktopk_decode(cache, num_q_heads, spec.topk_pages, spec.local_pages,
                                  topk=spec.topk_kernel, impl=spec.blocktopk_impl)


class FixedSlotAttend:
    """An ``attend(q, k, v)`` that writes the new token's K/V over each request's last
    cached token, then runs ``decode(q, out)``: the KV length stays fixed, so the
    planned kernels (and a CUDA graph of the step) stay valid for any number of steps.

    ``slot`` (a :class:`kinetics.model.fused.PagedSlot`) tells the fused layer where
    k and v go, so its q/k norm + RoPE kernel writes them itself and then calls
    ``cached(q)``.
    """

    slot: PagedSlot

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


def paged_attend(spec: DecodeSpec, method: str, q_heads: int, kv_heads: int, head_dim: int,
                 *, dtype, device, seed: int) -> FixedSlotAttend:
    """A :class:`FixedSlotAttend` for ``kv_heads`` KV heads: its own paged cache of
    ``spec.batch_size`` requests of ``spec.context`` random tokens (seeded by ``seed``)
    and the ``method`` decoder of :func:`make_decoder`."""
    import torch

    from kinetics.attention.cache import PagedKVCache, page_means_dtype

    check_methods((method,))
    cache = PagedKVCache.random(spec.batch_size, kv_heads, head_dim, spec.context,
                                page_size=spec.page_size, dtype=dtype, device=device, seed=seed,
                                page_means_dtype=page_means_dtype(spec.page_means_dtype))
    out = torch.empty(spec.batch_size, q_heads, head_dim, dtype=dtype, device=device)
    return FixedSlotAttend(cache, make_decoder(spec, method, cache, q_heads), out)


def layer_attend(spec: DecodeSpec, layer, method: str, seed: int | None = None
                 ) -> FixedSlotAttend:
    """:func:`paged_attend` for one layer shard (a ShardedDecoderLayer): its heads,
    dtype and device; cache seed ``seed`` (default ``spec.seed``) plus the shard's first
    KV head, so the ranks of one layer hold different caches."""
    base = spec.seed if seed is None else seed
    return paged_attend(spec, method, layer.local_q_heads, layer.local_kv_heads,
                        layer.head_dim, dtype=layer.dtype, device=layer.qkv_proj.device,
                        seed=base + layer.kv_head_start)


@dataclass
class DecodeWorkload:
    """What every method of one benchmark runs on: ``spec.replicas`` caches, queries and
    outputs (and, with a layer, the layer shard, its inputs and its weight bytes)."""

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


def build_workload(spec: DecodeSpec, with_layer: bool = False) -> DecodeWorkload:
    """Random caches and queries of ``spec`` on the GPU (seeded by ``spec.seed``); with
    ``with_layer`` also rank 0's decoder-layer shard and its hidden inputs."""
    import torch

    from kinetics.attention.cache import PagedKVCache, page_means_dtype

    model = spec.validate(("dense",))  # the caches and the layer: no block top-k field
    hq, hkv = spec.local_heads()
    d, b, dtype = model.head_dim, spec.batch_size, torch.bfloat16
    gen = torch.Generator(device="cuda").manual_seed(spec.seed)
    w = DecodeWorkload([], [], [], hq, hkv, d)
    for i in range(spec.replicas):
        w.caches.append(PagedKVCache.random(b, hkv, d, spec.context, page_size=spec.page_size,
                                            dtype=dtype, device="cuda", seed=spec.seed + i,
                                            generator=gen, page_means_dtype=page_means_dtype(
                                                spec.page_means_dtype)))
        w.queries.append(torch.randn((b, hq, d), dtype=dtype, device="cuda", generator=gen))
        w.outs.append(torch.empty((b, hq, d), dtype=dtype, device="cuda"))
    if with_layer:
        from kinetics.model.layer import ShardedDecoderLayer

        w.layer = ShardedDecoderLayer(model, tp_size=spec.tp, tp_rank=0, dtype=dtype,
                                      device="cuda", seed=spec.seed)
        w.weight_bytes = float(sum(p.numel() * p.element_size() for p in w.layer.parameters()))
        w.hiddens = [torch.randn((b, model.hidden_size), dtype=dtype, device="cuda",
                                 generator=gen) for _ in range(spec.replicas)]
        w.positions = torch.full((b,), spec.context - 1, dtype=torch.int64, device="cuda")
    return w
