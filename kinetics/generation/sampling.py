"""Next-token choice from logits: greedy or temperature + top-p by inverse CDF.

Pure torch: each row's token depends only on its own logits and its own uniform draw,
so a sample's tokens do not depend on which rows share its batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def next_tokens(logits: torch.Tensor, uniforms: torch.Tensor | None, temperature: float,
                top_p: float) -> torch.Tensor:
    """Token ids ``[B]`` (int64) from float logits ``[B, V]``.

    ``temperature == 0`` takes the arg-max (lowest id on ties) and ignores ``uniforms``.
    Otherwise the softmax of ``logits / temperature`` (in float64) is cut to the
    smallest set of most likely tokens whose mass reaches ``top_p`` (at least one
    token; ties ordered by id), renormalised, and row ``b`` takes the first token whose
    cumulative mass exceeds ``uniforms[b] * kept mass``; ``uniforms`` are in [0, 1).
    """
    import torch

    if temperature == 0.0:
        return logits.argmax(dim=-1)
    if uniforms is None:
        raise ValueError("sampling at temperature > 0 needs one uniform draw per row")
    probs = torch.softmax(logits.to(torch.float64) / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    cum = sorted_probs.cumsum(dim=-1)
    keep = (cum - sorted_probs) < top_p  # the mass before a token is under top_p
    keep[:, 0] = True
    kept = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
    kept_cum = kept.cumsum(dim=-1)
    target = uniforms.to(torch.float64)[:, None] * kept_cum[:, -1:]
    pos = (kept_cum <= target).sum(dim=-1, keepdim=True)
    pos = torch.minimum(pos, keep.sum(dim=-1, keepdim=True) - 1)
    return order.gather(-1, pos).squeeze(-1)


_M31 = 0x7FFFFFFF


def token_uniforms(seeds: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The uniform draw in [0, 1) (float64 ``[B]``) of token ``indices[b]`` (0 for a
    sample's first generated token) of the sample seeded ``seeds[b]`` (int64 ``[B]``,
    non-negative, as :func:`~kinetics.generation.backend.sample_seed` gives).

    A counter-based hash of (seed, index) in int64 arithmetic: no generator state, the
    same bits on CPU and GPU, and a row's draw never depends on the other rows, so a
    sample's tokens do not depend on its batch, its slot or when it was scheduled.
    """
    import torch

    from kinetics.model.weights import mix31

    seeds, indices = seeds.to(torch.int64), indices.to(torch.int64)
    lo, hi = seeds & _M31, (seeds >> 31) & _M31
    lo = (lo + (seeds >> 62) * 0x61C88647) & _M31  # bit 62 of a 63-bit seed counts too
    a = mix31((mix31((lo + indices * 0x2545F491) & _M31) ^ hi) & _M31)
    b = mix31((mix31((hi + indices * 0x3C6EF35F + 0x1B873593) & _M31) ^ lo) & _M31)
    bits = (a << 22) | (b >> 9)  # 31 + 22 = 53 random bits
    return bits.to(torch.float64) / float(1 << 53)
