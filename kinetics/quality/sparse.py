"""Sparse attention configurations and the selection masks they make.

Every selection is :mod:`kinetics.attention.reference`'s teacher-forced form
(:func:`~kinetics.attention.reference.causal_topk_mask`,
:func:`~kinetics.attention.reference.causal_block_mask`); queries before
``decode_start`` (the prompt, prefilled densely in a real deployment) keep dense
causal attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinetics.errors import InputError

if TYPE_CHECKING:
    import torch

METHODS = ("topk", "blocktopk")


@dataclass(frozen=True)
class SparseConfig:
    """One sparse attention setting.

    Attributes:
        method: ``"topk"`` (oracle token top-k) or ``"blocktopk"``.
        budget: tokens attended per (query, KV head).
        block_size: tokens per page (block top-k only, else ``None``).
        local_pages: trailing pages always attended (block top-k only).
    """

    method: str
    budget: int
    block_size: int | None = None
    local_pages: int = 1

    @property
    def label(self) -> str:
        if self.method == "topk":
            return f"topk k={self.budget}"
        return f"blocktopk b={self.block_size} k={self.budget}"


def build_configs(methods: list[str], budgets: list[int], block_sizes: list[int],
                  local_pages: int = 1) -> list[SparseConfig]:
    """Every (method, block size, budget) to sweep, validated (InputError on bad values)."""
    for method in methods:
        if method not in METHODS:
            raise InputError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    if not budgets or min(budgets) < 1:
        raise InputError(f"budgets must be >= 1 token, got {budgets}")
    if local_pages < 1:
        raise InputError(f"--local-pages must be >= 1, got {local_pages}")
    configs = []
    if "topk" in methods:
        configs += [SparseConfig("topk", b) for b in budgets]
    if "blocktopk" in methods:
        for size in block_sizes:
            if size < 1 or size & (size - 1):
                raise InputError(f"block size must be a power of two (tokens), got {size}")
            for b in budgets:
                if b % size or b // size < local_pages:
                    raise InputError(f"budget {b} is not a multiple of block size {size} "
                                     f"holding at least the {local_pages} local page(s)")
                configs.append(SparseConfig("blocktopk", b, size, local_pages))
    return configs


def selection_mask(config: SparseConfig, q: torch.Tensor, k: torch.Tensor,
                   decode_start: int = 0) -> torch.Tensor:
    """bool ``[batch, num_kv_heads, Tq, Tk]`` keys each query attends (query ``i`` at
    position ``Tk - Tq + i``); queries before position ``decode_start`` attend densely."""
    import torch

    from kinetics.attention import reference

    if config.method == "topk":
        mask = reference.causal_topk_mask(q, k, config.budget)
    else:
        mask = reference.causal_block_mask(q, k, config.block_size, config.budget //
                                           config.block_size, config.local_pages)
    tq, tk = q.shape[2], k.shape[2]
    pos = torch.arange(tq, device=q.device) + (tk - tq)
    visible = reference.causal_visibility(tq, tk, q.device)  # dense causal
    return torch.where((pos < decode_start)[:, None], visible, mask)
