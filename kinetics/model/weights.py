"""Deterministic synthetic weights of one Qwen3 decoder layer, shard by shard.

Every element is a pure function of ``(seed, tensor, row, column)`` (a counter-based
integer hash, :func:`hashed_uniform`), so each rank generates exactly its own shard,
directly on its device, and a shard of any ``tp_size`` equals the same slice of the
unsharded (``tp_size=1``) layer's weight bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kinetics.model.parallel import ShardPlan, mlp_width
from kinetics.models import ModelSpec

# Tensor ids for the weight hash (part of the weight definition: don't renumber).
_TENSOR_IDS = {
    "input_layernorm": 1, "q_proj": 2, "k_proj": 3, "v_proj": 4, "q_norm": 5,
    "k_norm": 6, "o_proj": 7, "post_attention_layernorm": 8, "gate_proj": 9,
    "up_proj": 10, "down_proj": 11,
}
KV_PREFILL_TENSOR_BASE = 1_000  # ids for synthetic KV-cache contents, per KV head

_M31 = 0x7FFFFFFF
_MUL = 0x45D9F3B  # < 2**27, so a 31-bit value times it stays below 2**58 (no int64 overflow)
_HASH_CHUNK = 1 << 22  # elements hashed at once (bounds the int64 temporaries: 32 MiB)

def mix31(x: torch.Tensor) -> torch.Tensor:
    """In-place 31-bit integer hash of an int64 tensor holding values in [0, 2**31)."""
    x.bitwise_xor_(x >> 16)
    x.mul_(_MUL).bitwise_and_(_M31)
    x.bitwise_xor_(x >> 16)
    x.mul_(_MUL).bitwise_and_(_M31)
    x.bitwise_xor_(x >> 16)
    return x


def hashed_uniform(seed: int, tensor_id: int, rows: torch.Tensor, cols: torch.Tensor,
                   bound: float, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Deterministic pseudo-random matrix ``W[i, j] = U(seed, tensor_id, rows[i], cols[j])``.

    Values are uniform in ``[-bound, bound)`` (std ``bound / sqrt(3)``). Each element
    depends only on its global (row, column) index, so any slice of a matrix can be
    generated alone and equals the same slice of the whole. The hash runs with int64
    arithmetic on ``device`` (CPU or GPU give identical bits); result shape
    ``[len(rows), len(cols)]`` in ``dtype``.
    """
    device = torch.device(device)
    rows = rows.to(device=device, dtype=torch.int64)
    cols = cols.to(device=device, dtype=torch.int64)
    key = mix31(torch.tensor([((seed & _M31) * 31 + tensor_id) & _M31], dtype=torch.int64,
                              device=device))
    row_hash = mix31((rows * 0x2545F491 + key) & _M31).unsqueeze(1)  # [R, 1]
    col_hash = mix31((cols * 0x3C6EF35F + 0x1B873593) & _M31).unsqueeze(0)  # [1, C]
    out = torch.empty(len(rows), len(cols), dtype=dtype, device=device)
    step = max(1, _HASH_CHUNK // max(1, len(cols)))
    scale = 2.0 * bound / 2.0**31
    for start in range(0, len(rows), step):
        x = mix31((row_hash[start:start + step] + col_hash) & _M31)
        out[start:start + step] = (x.to(torch.float32) * scale - bound).to(dtype)
    return out


def _indices(ranges: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    return torch.cat([torch.arange(a, b, dtype=torch.int64) for a, b in ranges]).to(device)


@dataclass(frozen=True)
class LayerWeights:
    """One rank's weights (fused layouts as the layer uses them).

    Shapes: norms ``[hidden]`` / ``[head_dim]``; qkv_proj ``[(local_q + 2 local_kv) *
    head_dim, hidden]`` (column parallel); o_proj ``[hidden, local_q * head_dim]`` (row
    parallel); gate_up_proj ``[2 * local_mlp, hidden]``; down_proj ``[hidden, local_mlp]``.
    Optional (None: the architecture has none): q_norm / k_norm (Qwen3's per-head norms),
    qkv_bias ``[(local_q + 2 local_kv) * head_dim]``, gate_up_bias ``[2 * local_mlp]``
    (column parallel: this rank's slice), o_bias and down_bias ``[hidden]`` (row parallel:
    the whole bias, added by rank 0 only).
    """

    input_layernorm: torch.Tensor
    qkv_proj: torch.Tensor
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None
    o_proj: torch.Tensor
    post_attention_layernorm: torch.Tensor
    gate_up_proj: torch.Tensor
    down_proj: torch.Tensor
    qkv_bias: torch.Tensor | None = None
    o_bias: torch.Tensor | None = None
    gate_up_bias: torch.Tensor | None = None
    down_bias: torch.Tensor | None = None

    def to(self, dtype: torch.dtype, device: torch.device | str) -> LayerWeights:
        """Every tensor cast to ``dtype`` on ``device`` (None stays None)."""
        return LayerWeights(**{name: None if t is None else t.to(device=device, dtype=dtype)
                               for name, t in self.__dict__.items()})


def layer_weights(model: ModelSpec, plan: ShardPlan, seed: int, dtype: torch.dtype,
                  device: torch.device | str) -> LayerWeights:
    """The shard ``plan`` of the layer's weights: projections uniform with std
    ``1 / sqrt(fan_in)``, norm weights ``1 + U[-0.1, 0.1)``."""
    device = torch.device(device)
    h, d = model.hidden_size, model.head_dim
    q_rows = (plan.q_start * d, (plan.q_start + plan.local_q_heads) * d)
    kv_rows = (plan.kv_start * d, (plan.kv_start + plan.local_kv_heads) * d)
    mlp_rows = (plan.mlp_start, plan.mlp_start + plan.local_mlp)
    all_h = [(0, h)]

    def gen(name: str, rows: list[tuple[int, int]], cols: list[tuple[int, int]],
            fan_in: int) -> torch.Tensor:
        return hashed_uniform(seed, _TENSOR_IDS[name], _indices(rows, device),
                              _indices(cols, device), math.sqrt(3.0 / fan_in), dtype, device)

    def norm(name: str, n: int) -> torch.Tensor:
        # 1 + U[-0.1, 0.1): not all ones, so a wrong norm weight would show in tests
        w = 1.0 + hashed_uniform(seed, _TENSOR_IDS[name], torch.zeros(1), torch.arange(n),
                                 0.1, torch.float32, device)[0]
        return w.to(dtype)

    return LayerWeights(
        input_layernorm=norm("input_layernorm", h),
        qkv_proj=torch.cat([gen("q_proj", [q_rows], all_h, h), gen("k_proj", [kv_rows], all_h, h),
                            gen("v_proj", [kv_rows], all_h, h)]),
        q_norm=norm("q_norm", d),
        k_norm=norm("k_norm", d),
        o_proj=gen("o_proj", all_h, [q_rows], model.num_q_heads * d),
        post_attention_layernorm=norm("post_attention_layernorm", h),
        gate_up_proj=torch.cat([gen("gate_proj", [mlp_rows], all_h, h),
                                gen("up_proj", [mlp_rows], all_h, h)]),
        down_proj=gen("down_proj", all_h, [mlp_rows], mlp_width(model)),
    )
