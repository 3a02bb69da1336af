"""Pure quality metrics over tensors (float32 math; no model, no I/O)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def attention_recall(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of each query's dense softmax mass on its selected keys.

    Args:
        probs: dense attention weights ``[B, Hq, Tq, Tk]`` (rows sum to 1).
        mask: selection ``[B, Hkv, Tq, Tk]``, shared by the ``Hq // Hkv`` query heads of
            a KV head (query head ``j`` reads KV head ``j // group``).

    Returns:
        float32 ``[B, Hq, Tq]`` in [0, 1].
    """
    import torch

    b, hq, tq, tk = probs.shape
    hkv = mask.shape[1]
    grouped = probs.to(torch.float32).view(b, hkv, hq // hkv, tq, tk)
    kept = (grouped * mask.unsqueeze(2)).sum(dim=-1)
    return kept.reshape(b, hq, tq)


def top1_agreement(dense_logits: torch.Tensor, sparse_logits: torch.Tensor) -> float:
    """Share of positions (rows of ``[N, vocab]``) whose arg-max token is the same."""
    same = dense_logits.argmax(dim=-1) == sparse_logits.argmax(dim=-1)
    return float(same.float().mean())


def kl_divergence(dense_logits: torch.Tensor, sparse_logits: torch.Tensor) -> torch.Tensor:
    """KL(dense || sparse) of each row's next-token distribution, nats ``[N]`` (>= 0 up to
    float32 rounding; exactly 0 for identical rows)."""
    import torch

    log_p = torch.log_softmax(dense_logits.to(torch.float32), dim=-1)
    log_q = torch.log_softmax(sparse_logits.to(torch.float32), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``targets`` ``[N]`` under each row of ``logits``, nats ``[N]``."""
    import torch

    log_p = torch.log_softmax(logits.to(torch.float32), dim=-1)
    return -log_p.gather(-1, targets[:, None]).squeeze(-1)


def quantile(values: torch.Tensor, q: float) -> float:
    """The ``q`` quantile (linear interpolation) of all elements of ``values``."""
    import numpy as np

    return float(np.quantile(values.detach().cpu().flatten().double().numpy(), q))
