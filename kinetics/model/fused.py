"""Fused elementwise kernels of a Qwen3 decoder layer's non-attention path.

Three operations cover everything between the GEMMs of a decode step:

* :func:`add_rms_norm`: residual add and RMSNorm in one pass (``h = x + residual``,
  ``normed = rms_norm(h)``), the first layer's plain RMSNorm when ``x`` is None;
* :func:`qk_norm_rope`: split the fused QKV projection into q, k, v, apply q/k
  RMSNorm per head and RoPE to q and k, copy v, in one launch;
* :func:`silu_mul`: ``silu(gate) * up`` of the fused gate/up projection.

On a CUDA tensor each is one Triton kernel (one program per row, or per (row, head));
elsewhere (CPU, or no triton) the torch reference below runs. Both follow the
rounding of :mod:`kinetics.model.layer` step by step (statistics in float32, every
intermediate the reference rounds to the activation dtype is rounded the same way),
so the fused layer matches the reference layer to float rounding of transcendental
functions only. Shapes: ``[batch, features]`` rows, contiguous.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kinetics.model.layer import RMS_EPS, apply_rope, rms_norm


@dataclass(frozen=True)
class PagedSlot:
    """Where each request's new token goes in a paged KV cache (HND pages).

    Attributes:
        k_pages, v_pages: [num_pages, num_kv_heads, page_size, head_dim].
        page: [batch] int64 physical page of each request's new token.
        index: the token's slot inside that page (the same for every request).
    """

    k_pages: torch.Tensor
    v_pages: torch.Tensor
    page: torch.Tensor
    index: int

    def write(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v [batch, num_kv_heads, head_dim] (torch indexing)."""
        self.k_pages[self.page, :, self.index] = k
        self.v_pages[self.page, :, self.index] = v


@functools.cache
def triton_available() -> bool:
    """True if triton is importable (the kernels then run on CUDA tensors)."""
    return importlib.util.find_spec("triton") is not None


def _use_triton(t: torch.Tensor) -> bool:
    return t.is_cuda and triton_available()


def add_rms_norm(x: torch.Tensor | None, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float = RMS_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """``h = x + residual`` (or ``residual`` when x is None) and ``rms_norm(h, weight)``.

    x, residual: [batch, hidden]; weight: [hidden]. Returns (normed, h), both
    [batch, hidden] in residual's dtype (``h`` is ``residual`` itself when x is None).
    """
    if not _use_triton(residual):
        h = residual if x is None else x + residual
        return rms_norm(h, weight, eps), h
    from kinetics.model import _fused_kernels as k

    return k.add_rms_norm(x, residual, weight, eps)


def qk_norm_rope(qkv: torch.Tensor, q_norm: torch.Tensor, k_norm: torch.Tensor,
                 positions: torch.Tensor, inv_freq: torch.Tensor, num_q_heads: int,
                 num_kv_heads: int, eps: float = RMS_EPS, slot: PagedSlot | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """q, k, v of the new token from the fused QKV projection ``qkv``.

    qkv: [batch, (num_q_heads + 2 num_kv_heads) * head_dim]; q_norm, k_norm:
    [head_dim]; positions: [batch] int64; inv_freq: [head_dim / 2] float32.
    Returns contiguous q [batch, num_q_heads, head_dim] and k, v [batch,
    num_kv_heads, head_dim]: q and k RMSNormed per head then rotated (RoPE).
    With ``slot``, k and v are stored into its pages instead (the same launch on
    CUDA) and returned as None.
    """
    batch = qkv.shape[0]
    d = qkv.shape[1] // (num_q_heads + 2 * num_kv_heads)
    if not _use_triton(qkv):
        nq, nkv = num_q_heads * d, num_kv_heads * d
        q = qkv[:, :nq].reshape(batch, num_q_heads, d)
        k = qkv[:, nq:nq + nkv].reshape(batch, num_kv_heads, d)
        v = qkv[:, nq + nkv:].reshape(batch, num_kv_heads, d).contiguous()
        q = apply_rope(rms_norm(q, q_norm, eps), positions, inv_freq)
        k = apply_rope(rms_norm(k, k_norm, eps), positions, inv_freq)
        if slot is None:
            return q, k, v
        slot.write(k, v)
        return q, None, None
    from kinetics.model import _fused_kernels as kernels

    return kernels.qk_norm_rope(qkv, q_norm, k_norm, positions, inv_freq, num_q_heads,
                                num_kv_heads, eps, slot)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for gate_up = [gate | up], [batch, 2 width] -> [batch, width]."""
    if not _use_triton(gate_up):
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up
    from kinetics.model import _fused_kernels as k

    return k.silu_mul(gate_up)


def fused_layer_step(layer, delta: torch.Tensor | None, residual: torch.Tensor, attend,
                     positions: torch.Tensor, fuse_kv_write: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step of ``layer`` (a ``ShardedDecoderLayer``) on the residual stream.

    The layer's input is ``residual + delta`` (``delta`` None: just ``residual``, the
    first layer); returns ``(delta_out, h)`` whose sum is the layer's output, so the
    next layer's (or the final) RMSNorm adds them in its fused kernel:

        h = residual + delta;  x = rms_norm(h)             # add_rms_norm
        q, k, v = qk_norm_rope(x @ W_qkv^T)                 # GEMM + 1 kernel
        a = all_reduce(attend(q, k, v) @ W_o^T)             # attention, GEMM
        h = h + a;  x = rms_norm(h)                         # add_rms_norm
        delta_out = all_reduce(silu_mul(x @ W_gu^T) @ W_down^T)

    Equals ``layer(residual + delta, attend, positions)`` (same roundings: every add
    is the reference's add). Inputs are not modified.

    An ``attend`` with a ``slot`` attribute (a :class:`PagedSlot`) and a
    ``cached(q)`` method (attention over its cache, the new token already stored)
    gets k and v written by the q/k norm + RoPE kernel itself, saving the cache
    writes' launches; ``fuse_kv_write=False`` calls ``attend(q, k, v)`` regardless.
    """
    if not layer.fused_supported:
        raise ValueError("the fused step computes Qwen3 layers (q/k norms, no biases); "
                         "use the layer's reference forward")
    eps = layer.rms_eps
    x, h = add_rms_norm(delta, residual, layer.input_layernorm, eps)
    slot = getattr(attend, "slot", None) if fuse_kv_write else None
    q, k, v = qk_norm_rope(F.linear(x, layer.qkv_proj), layer.q_norm, layer.k_norm, positions,
                           layer.inv_freq, layer.local_q_heads, layer.local_kv_heads,
                           eps=eps, slot=slot)
    attn = attend.cached(q) if slot is not None else attend(q, k, v)
    attn = layer.all_reduce(layer.post_attention(attn))
    x, h = add_rms_norm(attn, h, layer.post_attention_layernorm, eps)
    mlp = F.linear(silu_mul(F.linear(x, layer.gate_up_proj)), layer.down_proj)
    return layer.all_reduce(mlp), h
