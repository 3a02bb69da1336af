"""Teacher-forced forward passes of a HF model with its attention computed by the reference.

A function registered in transformers' ``AttentionInterface`` (the dispatch that
Llama/Qwen-style models use, ``config._attn_implementation``) receives each layer's
post-RoPE queries ``[1, Hq, T, D]`` and keys/values ``[1, Hkv, T, D]`` and computes
:func:`kinetics.attention.reference.causal_masked_attention` under the active plan's
selection mask (dense causal when there is none), optionally keeping q, k and v.
Dense and sparse passes go through the same function, so a selection holding every
visible key gives bit-identical logits.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kinetics.errors import InputError

if TYPE_CHECKING:
    import torch

    from kinetics.quality.sparse import SparseConfig

ATTENTION_NAME = "kinetics_reference"


@dataclass
class LayerQKV:
    """One layer's post-RoPE queries ``[1, Hq, T, D]``, keys and values ``[1, Hkv, T, D]``
    and its logit scale."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scale: float


@dataclass
class _Plan:
    config: SparseConfig | None
    decode_start: int
    capture: list[LayerQKV] | None
    calls: int = 0


_PLAN: contextvars.ContextVar[_Plan | None] = contextvars.ContextVar("kinetics_plan",
                                                                    default=None)


def _reference_attention(module: Any, query: torch.Tensor, key: torch.Tensor,
                         value: torch.Tensor, attention_mask: Any, scaling: float | None = None,
                         dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """AttentionInterface entry: returns ``([1, T, Hq, D], None)`` like transformers' own."""
    from kinetics.attention.reference import causal_masked_attention
    from kinetics.quality.sparse import selection_mask

    plan = _PLAN.get()
    if plan is None:
        raise RuntimeError("kinetics reference attention called outside teacher_forced()")
    if query.shape[0] != 1:
        raise InputError("the quality passes run one sequence (batch 1)")
    plan.calls += 1
    if plan.capture is not None:
        plan.capture.append(LayerQKV(query.detach(), key.detach(), value.detach(), scaling))
    mask = None if plan.config is None else selection_mask(plan.config, query, key,
                                                           plan.decode_start)
    out = causal_masked_attention(query, key, value, mask, scaling)
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def register() -> None:
    """Register the reference attention under :data:`ATTENTION_NAME` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _reference_attention)


@dataclass
class ForwardResult:
    """float32 logits ``[T, vocab]`` and, when captured, each layer's q, k, v in order."""

    logits: torch.Tensor
    layers: list[LayerQKV] | None


def teacher_forced(model: Any, ids: torch.Tensor, config: SparseConfig | None = None,
                   decode_start: int = 0, capture: bool = False) -> ForwardResult:
    """One forward pass over ``ids`` ``[1, T]`` with every layer's attention computed by the
    reference under ``config`` (``None``: dense) for the positions from ``decode_start``."""
    import torch

    register()
    previous = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION_NAME)
    plan = _Plan(config, decode_start, [] if capture else None)
    token = _PLAN.set(plan)
    try:
        with torch.no_grad():
            logits = model(ids, use_cache=False).logits[0].to(torch.float32)
    finally:
        _PLAN.reset(token)
        model.set_attn_implementation(previous)
    layers = getattr(model.config, "num_hidden_layers", None)
    if plan.calls == 0 or (layers is not None and plan.calls != layers):
        raise InputError(f"{type(model).__name__} does not dispatch its attention through "
                         "transformers' AttentionInterface (need a Llama/Qwen-style model)")
    return ForwardResult(logits, plan.capture)
