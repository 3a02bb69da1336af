"""One decoder layer, tensor parallel (Megatron style): Qwen3 (the presets), or a
Llama-family layer of real weights (no q/k norm, optional biases; see
:mod:`kinetics.model.checkpoint`). Its "batch" is one token per request in a decode step,
or a prompt's tokens in a prefill (the attend decides what each token sees).

The layer follows Qwen3's ``Qwen3DecoderLayer`` (HF transformers)::

    x = hidden
    h = x + all_reduce(o_proj_rowpar(attend(rope(k_norm/q_norm(qkv_colpar(rmsnorm(x)))))))
    out = h + all_reduce(down_rowpar(silu(gate_colpar(rmsnorm(h))) * up_colpar(rmsnorm(h))))

Column-parallel projections (QKV, gate/up) hold this rank's rows (its heads, its
slice of the MLP width); row-parallel projections (o_proj, down) hold the matching
input columns, so each rank produces a partial sum of the output and one
all-reduce per block completes it: two all-reduces per layer per decode step.

Which heads and MLP columns a rank holds: :func:`kinetics.model.parallel.shard_plan`
(KV heads replicated when ``tp_size`` exceeds them; MoE models run a *dense* MLP of
the active experts' width). Weights: :mod:`kinetics.model.weights` (each rank
generates exactly its own shard, equal bit for bit to the same slice of the unsharded
layer, so summing the ranks' partial outputs reproduces the unsharded layer up to
float rounding).

``group=None`` with ``tp_size > 1`` is *simulated* TP on one device (the paper's
benchmark): the layer has one rank's share of heads and MLP width and skips the
all-reduces. With a ``torch.distributed`` process group the all-reduces run over
it (NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from kinetics.errors import InputError
from kinetics.model.checkpoint import RMS_EPS, Architecture
from kinetics.model.parallel import shard_plan
from kinetics.model.weights import (
    KV_PREFILL_TENSOR_BASE,
    LayerWeights,
    hashed_uniform,
    layer_weights,
)
from kinetics.models import ModelSpec

_SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class CommTimer(Protocol):
    """Brackets each all-reduce (the benchmark uses it to time communication)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = RMS_EPS) -> torch.Tensor:
    """Qwen3 RMSNorm over the last dim: statistics in float32, output in x's dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (HF ``rotate_half`` layout) of x [batch, heads, head_dim].

    positions: [batch] integer token positions; cos/sin computed in float32.
    """
    freqs = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # [batch, head_dim/2]
    emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)  # [batch, 1, head_dim]
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def param(t: torch.Tensor) -> torch.nn.Parameter:
    """A frozen parameter (decode only: no gradients)."""
    return torch.nn.Parameter(t, requires_grad=False)


class ShardedDecoderLayer(torch.nn.Module):
    """One rank's shard of a Qwen3 decoder layer, for one-token-per-request decode.

    Args:
        model: the architecture (hidden size, heads, head_dim, MLP width).
        tp_size: tensor-parallel degree; 1 is the unsharded layer.
        tp_rank: this rank's index in [0, tp_size).
        group: torch.distributed process group of the tp_size ranks, or None: no
            communication (unsharded, or simulated TP on one device).
        dtype: parameter and activation dtype.
        device: where the weights are generated and live.
        seed: weight seed (same seed, any tp: shards of the same full weights).
        weights: real weights of this rank's shard (see :mod:`kinetics.model.checkpoint`),
            cast to ``dtype`` on ``device``; None generates synthetic ones from ``seed``.
        arch: RoPE base, RMSNorm epsilon (default: Qwen3's, as the presets).

    Attributes:
        local_q_heads, local_kv_heads: heads this rank computes.
        q_head_start, kv_head_start: global index of the first local head.
        kv_replicas: ranks holding each KV head (> 1 when tp_size > num_kv_heads).
        local_mlp: this rank's MLP width.
        position: RoPE position used when ``forward`` gets no positions; it advances
            by one after each such call.
        communicate: set False to skip the all-reduces (benchmarks the no-comm variant).
        comm_timer: optional object whose start()/stop() bracket each all-reduce.
    """

    def __init__(self, model: ModelSpec, tp_size: int = 1, tp_rank: int = 0, group=None,
                 dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu",
                 seed: int = 0, *, weights: LayerWeights | None = None,
                 arch: Architecture | None = None) -> None:
        super().__init__()
        plan = shard_plan(model, tp_size, tp_rank)
        if group is not None:
            size, rank = dist.get_world_size(group), dist.get_rank(group)
            if size != tp_size or rank != tp_rank:
                raise InputError(f"process group has size {size}, rank {rank}; layer was "
                                 f"asked for tp_size {tp_size}, tp_rank {tp_rank}")
        device = torch.device(device)
        self.model, self.tp_size, self.tp_rank, self.group = model, tp_size, tp_rank, group
        self.dtype, self.seed = dtype, seed
        self.hidden_size, self.head_dim = model.hidden_size, model.head_dim
        self.plan = plan
        self.q_head_start, self.local_q_heads = plan.q_start, plan.local_q_heads
        self.kv_head_start, self.local_kv_heads = plan.kv_start, plan.local_kv_heads
        self.kv_replicas = plan.kv_replicas
        self.mlp_start, self.local_mlp = plan.mlp_start, plan.local_mlp
        self.position = 0
        self.communicate = True
        self.comm_timer: CommTimer | None = None

        arch = arch or Architecture.qwen3(model)
        self.rms_eps = arch.rms_norm_eps
        w = (layer_weights(model, plan, seed, dtype, device) if weights is None
             else weights.to(dtype, device))
        for name, tensor in w.__dict__.items():  # None: the architecture has no such tensor
            setattr(self, name, None if tensor is None else param(tensor))
        d = self.head_dim
        inv_freq = 1.0 / (arch.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        self.register_buffer("inv_freq", inv_freq.to(device), persistent=False)

    @property
    def fused_supported(self) -> bool:
        """Whether :func:`kinetics.model.fused.fused_layer_step` computes this layer (q/k
        norms, no biases: Qwen3)."""
        return self.q_norm is not None and all(
            b is None for b in (self.qkv_bias, self.o_bias, self.gate_up_bias, self.down_bias))

    def _row_bias(self, partial: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """A row-parallel projection's bias, added by rank 0 only (the all-reduce sums)."""
        return partial if bias is None or self.tp_rank else partial + bias

    # -- the two blocks, each ending in a partial sum (before the all-reduce) ----------

    def pre_attention(self, hidden: torch.Tensor, positions: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input RMSNorm, QKV, q/k RMSNorm and RoPE of the new token: (q, k, v).

        hidden: [batch, hidden_size]; positions: [batch] int, or None for ``self.position``.
        Returns q [batch, local_q_heads, head_dim], k and v [batch, local_kv_heads, head_dim].
        """
        if hidden.dim() != 2 or hidden.shape[1] != self.hidden_size:
            raise ValueError(f"hidden must be [batch, {self.hidden_size}], got {tuple(hidden.shape)}")
        batch, d = hidden.shape[0], self.head_dim
        if positions is None:
            positions = torch.full((batch,), self.position, dtype=torch.int64, device=hidden.device)
            self.position += 1
        elif positions.shape != (batch,):
            raise ValueError(f"positions must be [{batch}], got {tuple(positions.shape)}")
        x = rms_norm(hidden, self.input_layernorm, self.rms_eps)
        qkv = F.linear(x, self.qkv_proj, self.qkv_bias)
        nq, nkv = self.local_q_heads * d, self.local_kv_heads * d
        q = qkv[:, :nq].reshape(batch, self.local_q_heads, d)
        k = qkv[:, nq:nq + nkv].reshape(batch, self.local_kv_heads, d)
        v = qkv[:, nq + nkv:].reshape(batch, self.local_kv_heads, d).contiguous()
        if self.q_norm is not None:
            q, k = rms_norm(q, self.q_norm, self.rms_eps), rms_norm(k, self.k_norm, self.rms_eps)
        return apply_rope(q, positions, self.inv_freq), apply_rope(k, positions, self.inv_freq), v

    def post_attention(self, attn: torch.Tensor) -> torch.Tensor:
        """o_proj of attn [batch, local_q_heads, head_dim]: partial [batch, hidden_size]."""
        return self._row_bias(attn.reshape(attn.shape[0], -1) @ self.o_proj.t(), self.o_bias)

    def attention_partial(self, hidden: torch.Tensor, attend: Attend,
                          positions: torch.Tensor | None = None) -> torch.Tensor:
        """This rank's partial o_proj output [batch, hidden_size] (sum over ranks = attention out).

        hidden: [batch, hidden_size]; positions: [batch] int, or None for ``self.position``.
        """
        q, k, v = self.pre_attention(hidden, positions)
        return self.post_attention(attend(q, k, v))

    def mlp_partial(self, hidden: torch.Tensor) -> torch.Tensor:
        """This rank's partial MLP output [batch, hidden_size] (sum over ranks = MLP out)."""
        x = rms_norm(hidden, self.post_attention_layernorm, self.rms_eps)
        gate, up = F.linear(x, self.gate_up_proj, self.gate_up_bias).split(self.local_mlp, dim=-1)
        return self._row_bias((F.silu(gate) * up) @ self.down_proj.t(), self.down_bias)

    def all_reduce(self, partial: torch.Tensor) -> torch.Tensor:
        """Sum ``partial`` over the group in place (no-op without a group or communicate=False)."""
        if self.group is None or not self.communicate:
            return partial
        if self.comm_timer is not None:
            self.comm_timer.start()
        dist.all_reduce(partial, op=dist.ReduceOp.SUM, group=self.group)
        if self.comm_timer is not None:
            self.comm_timer.stop()
        return partial

    def forward(self, hidden: torch.Tensor, attend: Attend,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """One decode step: hidden [batch, hidden_size] -> [batch, hidden_size].

        attend(q, k, v): q [batch, local_q_heads, head_dim], k/v [batch, local_kv_heads,
        head_dim] (the new token, after q/k RMSNorm and RoPE) -> [batch, local_q_heads,
        head_dim]; it owns the KV cache (appends k/v, then attends). Query head i reads
        local KV head i // (local_q_heads // local_kv_heads), as in HF ``repeat_kv``.
        positions: [batch] int token positions (RoPE), default ``self.position`` for all.
        """
        h = hidden + self.all_reduce(self.attention_partial(hidden, attend, positions))
        return h + self.all_reduce(self.mlp_partial(h))


class GraphedDecodeStep:
    """One decode step with CUDA graphs around attention (vLLM's piecewise scheme).

    The layer's work outside attention is captured in CUDA graphs and replayed:
    input RMSNorm, QKV, q/k norm and RoPE before ``attend``; o_proj, residual,
    RMSNorm and MLP after it. ``attend`` runs eagerly (its KV length changes every
    step). Each all-reduce is captured in a graph of its own, so ``layer.comm_timer``
    can still bracket it; with ``layer.communicate`` False at capture they are left
    out. This removes the per-kernel launch overhead that otherwise dominates a
    decode step at small batch.

    Call as ``step(hidden, attend, positions)`` with the batch size given here; it
    returns a static output tensor that the next call overwrites (clone to keep it).
    Capture warms up with a stand-in attention (zeros), so ``attend`` is called only
    by the steps themselves.
    """

    def __init__(self, layer: ShardedDecoderLayer, batch_size: int) -> None:
        device = layer.qkv_proj.device
        if device.type != "cuda":
            raise ValueError("CUDA graphs need the layer on a CUDA device")
        self.layer, self.device = layer, device
        self.communicate = layer.communicate and layer.group is not None
        self.hidden = torch.zeros(batch_size, layer.hidden_size, dtype=layer.dtype, device=device)
        self.positions = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self.attn = torch.zeros(batch_size, layer.local_q_heads, layer.head_dim,
                                dtype=layer.dtype, device=device)
        timer, layer.comm_timer = layer.comm_timer, None
        try:
            self._capture()
        finally:
            layer.comm_timer = timer

    def _capture(self) -> None:
        layer, dev, out = self.layer, self.device, {}

        def pre():
            out["qkv"] = layer.pre_attention(self.hidden, self.positions)

        def o_proj():
            out["p1"] = layer.post_attention(self.attn)

        def reduce1():
            layer.all_reduce(out["p1"])

        def mlp():
            out["h"] = self.hidden + out["p1"]
            out["p2"] = layer.mlp_partial(out["h"])

        def reduce2():
            layer.all_reduce(out["p2"])

        def residual():
            out["out"] = out["h"] + out["p2"]

        pieces = [pre, o_proj, reduce1, mlp, reduce2, residual]
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):  # warm-up off the capture, as torch requires
            for _ in range(2):
                for fn in pieces:
                    fn()
        torch.cuda.current_stream(dev).wait_stream(side)
        torch.cuda.synchronize(dev)
        self.graphs: list[tuple[str, torch.cuda.CUDAGraph]] = []
        for fn in pieces:
            if fn in (reduce1, reduce2) and not self.communicate:
                continue
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                fn()
            self.graphs.append((fn.__name__, graph))
        torch.cuda.synchronize(dev)
        self.q, self.k, self.v = out["qkv"]
        self.out = out["out"]
        self._static = out  # the graphs' intermediate tensors stay referenced

    def __call__(self, hidden: torch.Tensor, attend: Attend,
                 positions: torch.Tensor) -> torch.Tensor:
        self.hidden.copy_(hidden)
        self.positions.copy_(positions)
        timer = self.layer.comm_timer
        for name, graph in self.graphs:
            if name == "o_proj":
                self.attn.copy_(attend(self.q, self.k, self.v))
            if timer is not None and name.startswith("reduce"):
                timer.start()
                graph.replay()
                timer.stop()
            else:
                graph.replay()
        return self.out


class DenseKVAttend:
    """Reference attend: contiguous per-rank KV cache in torch, dense softmax attention.

    Holds K and V as [batch, local_kv_heads, capacity, head_dim] (capacity doubles when
    full). ``context`` tokens are prefilled with synthetic values that depend only on
    the global KV head index (``kv_head_start + j``), the batch row, the token and
    ``seed``, so a sharded run and an unsharded run see the same cache.
    Call it as ``attend(q, k, v)`` (shapes as in ``ShardedDecoderLayer.forward``).
    """

    def __init__(self, local_q_heads: int, local_kv_heads: int, head_dim: int, batch_size: int,
                 context: int, device: torch.device | str, dtype: torch.dtype, *,
                 kv_head_start: int = 0, seed: int = 0) -> None:
        if local_q_heads % local_kv_heads:
            raise ValueError("local_q_heads must be a multiple of local_kv_heads")
        self.group_size = local_q_heads // local_kv_heads
        self.length = context
        capacity = max(16, context + 16)
        shape = (batch_size, local_kv_heads, capacity, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        if context:
            rows = torch.arange(batch_size * context)
            cols = torch.arange(head_dim)
            bound = math.sqrt(3.0)  # unit RMS, like a normed key
            for j in range(local_kv_heads):
                tid = KV_PREFILL_TENSOR_BASE + 2 * (kv_head_start + j)
                for cache, off in ((self.k, 0), (self.v, 1)):
                    vals = hashed_uniform(seed, tid + off, rows, cols, bound, dtype, device)
                    cache[:, j, :context] = vals.view(batch_size, context, head_dim)

    def _grow(self) -> None:
        pad = torch.zeros_like(self.k)
        self.k = torch.cat([self.k, pad], dim=2)
        self.v = torch.cat([self.v, pad.clone()], dim=2)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.length == self.k.shape[2]:
            self._grow()
        self.k[:, :, self.length] = k
        self.v[:, :, self.length] = v
        self.length += 1
        batch, heads, d = q.shape
        kv_heads = self.k.shape[1]
        # one query token, no mask: the GQA group's queries become the "query length"
        qg = q.reshape(batch, kv_heads, self.group_size, d)
        # not cuDNN: its graph is rebuilt for every new KV length (~80 ms per call, H100)
        with sdpa_kernel(_SDPA_BACKENDS):
            out = F.scaled_dot_product_attention(qg, self.k[:, :, :self.length],
                                                 self.v[:, :, :self.length])
        return out.reshape(batch, heads, d)


def dense_attend_factory(local_q_heads: int, local_kv_heads: int, head_dim: int,
                         batch_size: int, context: int, device: torch.device | str,
                         dtype: torch.dtype, *, kv_head_start: int = 0,
                         seed: int = 0) -> DenseKVAttend:
    """``attend_factory`` for dense attention over a contiguous torch KV cache."""
    return DenseKVAttend(local_q_heads, local_kv_heads, head_dim, batch_size, context, device,
                         dtype, kv_head_start=kv_head_start, seed=seed)
