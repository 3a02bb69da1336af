"""Exact decode cost of test-time scaling: compute FLOPs, memory bytes, eFLOPs.

Costs are exact integer sums over the decode steps, evaluated in closed form, split
into a per-sample *private* part and a *shared* part paid once per step by samples
of one query decoding together. The notation, the formulas and their caveats are
written down in one place, docs/cost-model.md.

All functions take scalars or numpy arrays (broadcast together) and return float64
arrays of FLOPs or bytes.

Exactness range. Every length (S, T, and a config's B, b, W) must lie in
0..MAX_TOKENS = 2**31 tokens, 16384x Qwen3's 131,072-token context; larger ones raise
InputError, never a wrapped-around number. Over that whole range the token sums
(:func:`context_token_sum`, :func:`attended_token_sum`, :func:`block_key_sum`) are the
exact integers, computed in int64 so that no intermediate product exceeds 2**63
(the largest sum, S*T + T(T+1)/2 at S = T = 2**31, is below 1.5 * 2**62). FLOPs and
bytes are float64: the exact integer whenever it is below 2**53 (about 9e15; without
``batch_size``), otherwise within 1e-15 relative of it (a few float64 roundings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from kinetics.errors import InputError
from kinetics.models import ModelSpec

Method = Literal["dense", "topk", "blocktopk"]
METHODS: tuple[str, ...] = ("dense", "topk", "blocktopk")
MAX_TOKENS = 2**31  # largest accepted length (S, T, B, b, W), tokens; see "Exactness range"
# Bytes a stored element takes, by type name (--kv-dtype, --weight-dtype); "bf16" is
# the paper's (and the default) for both. int4 counts the 4-bit weights alone: the
# scales of a grouped format (e.g. one fp16 scale per 128 weights, +1/64 byte a
# weight) are not counted. An fp8 KV cache's per-tensor or per-head scales are
# likewise left out (a few bytes per layer).
KV_DTYPES: dict[str, int] = {"bf16": 2, "fp8": 1}
WEIGHT_DTYPES: dict[str, float] = {"bf16": 2.0, "fp8": 1.0, "int4": 0.5}
DEFAULT_DTYPE = "bf16"

ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class AttentionConfig:
    """How decode attention reads the KV cache.

    Attributes:
        method: 'dense', 'topk' (oracle token top-k) or 'blocktopk'.
        budget: tokens attended per step, B (top-k and block top-k).
            For block top-k, B = local + topk_blocks * block_size.
        block_size: tokens per block (block top-k), b.
        local: local window always attended, W tokens (block top-k).
    """

    method: Method = "dense"
    budget: int | None = None
    block_size: int | None = None
    local: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method '{self.method}' (choose from {', '.join(METHODS)})")
        for name in ("budget", "block_size", "local"):
            value = getattr(self, name)
            if value is not None and value > MAX_TOKENS:
                raise InputError(f"{name} {value} is over the {MAX_TOKENS} (2**31) token cap")
        if self.method == "dense":
            if self.budget is not None or self.block_size is not None or self.local:
                raise InputError("dense attention takes no budget, block size or local window")
            return
        if self.budget is None or self.budget < 1:
            raise InputError(f"{self.method} needs a budget of at least 1 token, got {self.budget}")
        if self.method == "topk":
            if self.block_size is not None or self.local:
                raise InputError("top-k takes no block size or local window (use blocktopk)")
            return
        if self.block_size is None or self.block_size < 1:
            raise InputError(f"blocktopk needs a block size of at least 1, got {self.block_size}")
        if self.local < 0:
            raise InputError(f"local window must be >= 0 tokens, got {self.local}")
        if (self.budget - self.local) % self.block_size or self.budget - self.local < 0:
            raise InputError(
                f"blocktopk budget {self.budget} must be local ({self.local}) plus a whole "
                f"number of blocks of {self.block_size}"
            )

    @classmethod
    def dense(cls) -> AttentionConfig:
        return cls("dense")

    @classmethod
    def topk(cls, budget: int) -> AttentionConfig:
        return cls("topk", budget=budget)

    @classmethod
    def blocktopk(cls, block_size: int, *, topk_blocks: int | None = None,
                  budget: int | None = None, local: int = 0) -> AttentionConfig:
        """Block top-k from k blocks (``topk_blocks``) or from the token budget."""
        if (topk_blocks is None) == (budget is None):
            raise InputError("blocktopk needs exactly one of a budget or a number of top-k blocks")
        if topk_blocks is not None:
            budget = local + topk_blocks * block_size
        return cls("blocktopk", budget=budget, block_size=block_size, local=local)

    @property
    def topk_blocks(self) -> int | None:
        if self.method != "blocktopk":
            return None
        return (self.budget - self.local) // self.block_size

    @property
    def label(self) -> str:
        """A short name: 'dense', 'topk1024', 'blocktopk1024-b16-w0'."""
        if self.method == "dense":
            return "dense"
        if self.method == "topk":
            return f"topk{self.budget}"
        return f"blocktopk{self.budget}-b{self.block_size}-w{self.local}"


@dataclass(frozen=True)
class Cost:
    """Compute FLOPs and memory bytes (numpy arrays of one shape)."""

    compute_flops: np.ndarray
    memory_bytes: np.ndarray

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.compute_flops + other.compute_flops, self.memory_bytes + other.memory_bytes)

    def scale(self, factor: ArrayLike) -> Cost:
        return Cost(self.compute_flops * factor, self.memory_bytes * factor)

    def eflops(self, intensity: float) -> np.ndarray:
        """eFLOPs = compute FLOPs + I * memory bytes (I in FLOPs per byte)."""
        return self.compute_flops + intensity * self.memory_bytes


def as_token_counts(value: ArrayLike, name: str) -> np.ndarray:
    """``value`` as an int64 array of token counts, checked to lie in 0..MAX_TOKENS.

    Raises InputError naming ``name`` for a negative, non-finite or too large count
    (checked before the int64 cast, so 10**30 is an error, not a wrapped number).
    """
    array = np.asarray(value)
    if array.dtype == np.int64:  # the common case, one pass: negatives view as huge
        if array.size and array.view(np.uint64).max() > MAX_TOKENS:
            _reject(array, name)
        return array
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(f"{name} must be a finite number of tokens", field=name)
    if array.size and (array.min() < 0 or array.max() > MAX_TOKENS):
        _reject(array, name)
    return array.astype(np.int64)


def _reject(array: np.ndarray, name: str) -> None:
    bad = array.min() if array.min() < 0 else array.max()
    raise InputError(f"{name} must be 0..{MAX_TOKENS} (2**31) tokens, got {bad}", field=name)


def _lengths(prompt_len: ArrayLike, gen_len: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return as_token_counts(prompt_len, "prompt_len"), as_token_counts(gen_len, "gen_len")


def context_token_sum(prompt_len: ArrayLike, gen_len: ArrayLike) -> np.ndarray:
    """sum_{t<T} c_t = S*T + T(T+1)/2 tokens (int64, exact for lengths up to MAX_TOKENS)."""
    s, t = _lengths(prompt_len, gen_len)
    return s * t + t * (t + 1) // 2


def attended_token_sum(prompt_len: ArrayLike, gen_len: ArrayLike,
                       budget: ArrayLike | None) -> np.ndarray:
    """sum_{t<T} min(B, c_t) tokens (int64, exact); dense when ``budget`` is None.

    The first m = clip(B - S, 0, T) steps attend all their c_t <= B tokens, the
    remaining T - m attend exactly B. Each of the three terms is part of a sum
    at most sum_t c_t < 2**63, so none overflows.
    """
    if budget is None:
        return context_token_sum(prompt_len, gen_len)
    s, t = _lengths(prompt_len, gen_len)
    b = as_token_counts(budget, "budget")
    m = np.clip(b - s, 0, t)
    return s * m + m * (m + 1) // 2 + (t - m) * b


def block_key_sum(prompt_len: ArrayLike, gen_len: ArrayLike, block_size: ArrayLike) -> np.ndarray:
    """sum_{t<T} ceil(c_t / b): block representatives scored over the decode (int64, exact).

    With S = b*q0 + r0, every c = S + i (i = 1..T) has ceil(c/b) = q0 + ceil((r0 + i)/b),
    so the sum is T*q0 plus sum_{j=r0+1}^{r0+T} ceil(j/b) = F(r0 + T) - r0, where
    F(n) = sum_{j=1}^{n} ceil(j/b) = b*q(q+1)/2 + r(q+1) for n = b*q + r. Working from
    r0 < b rather than from S keeps every product below (T+1)**2 + T + 1 < 2**63 up to
    MAX_TOKENS (F(S + T) itself overflows int64 at b = 1, S = T = 2**31).
    """
    s, t = _lengths(prompt_len, gen_len)
    b = as_token_counts(block_size, "block_size")
    q0, r0 = np.divmod(s, b)
    q, r = np.divmod(r0 + t, b)
    return t * q0 + b * q * (q + 1) // 2 + r * (q + 1) - r0


def kv_bytes_per_element(kv_dtype: str) -> int:
    """Bytes of one KV-cache element of type ``kv_dtype`` ('bf16' 2, 'fp8' 1)."""
    if kv_dtype not in KV_DTYPES:
        raise InputError(f"unknown KV-cache dtype '{kv_dtype}' (choose from "
                         f"{', '.join(KV_DTYPES)})", field="kv_dtype")
    return KV_DTYPES[kv_dtype]


def weight_bytes_per_param(weight_dtype: str) -> float:
    """Bytes of one parameter of type ``weight_dtype`` ('bf16' 2, 'fp8' 1, 'int4' 0.5)."""
    if weight_dtype not in WEIGHT_DTYPES:
        raise InputError(f"unknown weight dtype '{weight_dtype}' (choose from "
                         f"{', '.join(WEIGHT_DTYPES)})", field="weight_dtype")
    return WEIGHT_DTYPES[weight_dtype]


def _per_token_attention(model: ModelSpec, kv_dtype: str) -> tuple[int, int]:
    """(FLOPs, bytes) of attending one cached token in all layers: QK and PV, K and V."""
    flops = 4 * model.num_layers * model.num_q_heads * model.head_dim
    nbytes = 2 * kv_bytes_per_element(kv_dtype) * model.num_layers * model.num_kv_heads \
        * model.head_dim
    return flops, nbytes


def _per_block_key(model: ModelSpec, kv_dtype: str) -> tuple[int, int]:
    """(FLOPs, bytes) of scoring one block representative in all layers (K only)."""
    flops = 2 * model.num_layers * model.num_q_heads * model.head_dim
    nbytes = kv_bytes_per_element(kv_dtype) * model.num_layers * model.num_kv_heads * model.head_dim
    return flops, nbytes


def sample_cost(model: ModelSpec, attention: AttentionConfig, prompt_len: ArrayLike,
                gen_len: ArrayLike, kv_dtype: str = DEFAULT_DTYPE) -> Cost:
    """Private cost of decoding one sample of ``gen_len`` tokens after ``prompt_len``.

    Compute: 2*P*T (P = active parameters) plus attention FLOPs. Memory: KV bytes
    this sample reads that no other sample of the group shares, at ``kv_dtype``'s
    bytes per element.
    """
    s, t = _lengths(prompt_len, gen_len)
    attn_flops, attn_bytes = _per_token_attention(model, kv_dtype)
    linear_flops = 2.0 * model.active_params * t
    if attention.method == "dense":
        private_tokens = t * (t + 1) // 2  # the sample's own generated tokens
        compute = linear_flops + attn_flops * context_token_sum(s, t).astype(np.float64)
        memory = attn_bytes * private_tokens.astype(np.float64)
        return _broadcast_cost(compute, memory, s, t)
    attended = attended_token_sum(s, t, attention.budget).astype(np.float64)
    compute = linear_flops + attn_flops * attended
    memory = attn_bytes * attended
    if attention.method == "blocktopk":
        key_flops, key_bytes = _per_block_key(model, kv_dtype)
        keys = block_key_sum(s, t, attention.block_size)
        private_keys = keys - (s // attention.block_size) * t
        compute = compute + key_flops * keys.astype(np.float64)
        memory = memory + key_bytes * private_keys.astype(np.float64)
    return _broadcast_cost(compute, memory, s, t)


def _broadcast_cost(compute: np.ndarray, memory: np.ndarray, s: np.ndarray, t: np.ndarray) -> Cost:
    """Cost whose two float64 arrays both have the broadcast shape of S and T."""
    shape = np.broadcast(s, t).shape
    return Cost(*(np.asarray(part, dtype=np.float64) if np.shape(part) == shape
                  else np.broadcast_to(part, shape).astype(np.float64) for part in (compute, memory)))


def shared_cost(model: ModelSpec, attention: AttentionConfig, prompt_len: ArrayLike,
                max_gen_len: ArrayLike, kv_dtype: str = DEFAULT_DTYPE) -> Cost:
    """Cost paid once per decode step by a group of samples of one prompt.

    Dense: the prompt's KV (S tokens) read once a step for all samples. Block
    top-k: the prompt's floor(S/b) full-block representative keys read once a step.
    Top-k: nothing is shared (sparse reads differ per sample). Zero FLOPs. Bytes at
    ``kv_dtype``'s size.
    """
    s, t = _lengths(prompt_len, max_gen_len)
    if attention.method == "dense":
        _, attn_bytes = _per_token_attention(model, kv_dtype)
        memory = attn_bytes * (s * t).astype(np.float64)
    elif attention.method == "blocktopk":
        _, key_bytes = _per_block_key(model, kv_dtype)
        memory = key_bytes * ((s // attention.block_size) * t).astype(np.float64)
    else:
        memory = np.zeros(np.broadcast(s, t).shape)
    return Cost(np.zeros_like(memory), memory)


def weight_bytes_per_step(model: ModelSpec, batch_size: int,
                          weight_dtype: str = DEFAULT_DTYPE) -> float:
    """Parameter bytes read in one decode step of a batch of ``batch_size`` sequences,
    at ``weight_dtype``'s bytes per parameter.

    Dense models read all weights. MoE models read the shared weights and the
    experts the batch touches, in expectation E * (1 - (1 - k/E)^batch) per layer
    when each token picks k of E experts uniformly.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    per_param = weight_bytes_per_param(weight_dtype)
    if not model.is_moe:
        return float(per_param * model.total_params)
    e, k = model.num_experts, model.experts_per_token
    if k >= e:  # every token uses every expert: all weights are read each step
        return float(per_param * model.total_params)
    # One expert's parameters summed over all layers, from the (published) totals.
    expert_stack = (model.total_params - model.active_params) / (e - k)
    shared = model.active_params - k * expert_stack
    touched = e * (1.0 - (1.0 - k / e) ** batch_size)
    return float(per_param * (shared + touched * expert_stack))


def weight_cost(model: ModelSpec, gen_len: ArrayLike, batch_size: int | None,
                weight_dtype: str = DEFAULT_DTYPE) -> Cost:
    """Per-sample share of parameter reads: T steps x weight bytes / batch size.

    Zero when ``batch_size`` is None (the paper's default: weights amortized away).
    """
    t = as_token_counts(gen_len, "gen_len").astype(np.float64)
    if batch_size is None:
        weight_bytes_per_param(weight_dtype)  # an unknown dtype is an error even here
        return Cost(np.zeros_like(t), np.zeros_like(t))
    return Cost(np.zeros_like(t),
                t * weight_bytes_per_step(model, batch_size, weight_dtype) / batch_size)


@dataclass(frozen=True)
class CostSettings:
    """How a decode is priced beyond its token counts; the defaults are the paper's.

    Attributes:
        kv_dtype: KV-cache element type, a key of KV_DTYPES ('bf16', 'fp8').
        weight_dtype: parameter type, a key of WEIGHT_DTYPES ('bf16', 'fp8', 'int4').
        batch_size: sequences decoded together, over which each step's parameter
            reads are shared; None leaves parameter reads out (the paper's default).
    """

    kv_dtype: str = DEFAULT_DTYPE
    weight_dtype: str = DEFAULT_DTYPE
    batch_size: int | None = None

    def __post_init__(self) -> None:
        kv_bytes_per_element(self.kv_dtype)
        weight_bytes_per_param(self.weight_dtype)
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}")

    def private(self, model: ModelSpec, attention: AttentionConfig, prompt_len: ArrayLike,
                gen_len: ArrayLike) -> Cost:
        """One sample's private cost: :func:`sample_cost` plus :func:`weight_cost`."""
        return (sample_cost(model, attention, prompt_len, gen_len, self.kv_dtype)
                + weight_cost(model, gen_len, self.batch_size, self.weight_dtype))

    def shared(self, model: ModelSpec, attention: AttentionConfig, prompt_len: ArrayLike,
               max_gen_len: ArrayLike) -> Cost:
        """A group's shared cost: :func:`shared_cost` at this KV dtype."""
        return shared_cost(model, attention, prompt_len, max_gen_len, self.kv_dtype)


DEFAULT_SETTINGS = CostSettings()  # bf16 KV cache and weights, parameter reads left out


def query_cost(model: ModelSpec, attention: AttentionConfig, prompt_len: ArrayLike,
               gen_len: ArrayLike, num_samples: ArrayLike = 1,
               batch_size: int | None = None, kv_dtype: str = DEFAULT_DTYPE,
               weight_dtype: str = DEFAULT_DTYPE) -> Cost:
    """Cost of N samples of one query, each ``gen_len`` tokens, decoded together.

    Dense memory: 2*L*h_kv*d*(2S + N*(T+1))*T bytes at bf16 (scaled by the KV
    dtype's bytes per element); compute N*(2PT + attention), the same at every dtype.
    """
    settings = CostSettings(kv_dtype, weight_dtype, batch_size)
    n = np.asarray(num_samples, dtype=np.float64)
    private = settings.private(model, attention, prompt_len, gen_len)
    return private.scale(n) + settings.shared(model, attention, prompt_len, gen_len)
