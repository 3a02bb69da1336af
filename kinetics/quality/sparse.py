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
        means_dtype: how the page means are stored (block top-k only): ``None`` float32,
            or a name of :data:`kinetics.attention.cache.PAGE_MEANS_DTYPES`.
    """

    method: str
    budget: int
    block_size: int | None = None
    local_pages: int = 1
    means_dtype: str | None = None

    @property
    def label(self) -> str:
        if self.method == "topk":
            return f"topk k={self.budget}"
        means = f" {self.means_dtype}" if self.means_dtype else ""
        return f"blocktopk b={self.block_size} k={self.budget}{means}"


def build_configs(methods: list[str], budgets: list[int], block_sizes: list[int],
                  local_pages: int = 1, means_dtypes: list[str | None] | None = None
                  ) -> list[SparseConfig]:
    """Every (method, block size, page-means dtype, budget) to sweep, validated
    (InputError on bad values); ``means_dtypes`` default ``[None]`` (float32 means)."""
    from kinetics.attention.cache import page_means_dtype

    means_dtypes = means_dtypes or [None]
    for name in means_dtypes:
        if name is not None:
            page_means_dtype(name)  # InputError on an unknown name
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
            configs += [SparseConfig("blocktopk", b, size, local_pages, dtype)
                        for dtype in means_dtypes for b in budgets]
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
        from kinetics.attention.cache import page_means_dtype

        dtype = page_means_dtype(config.means_dtype) if config.means_dtype else None
        mask = reference.causal_block_mask(q, k, config.block_size, config.budget //
                                           config.block_size, config.local_pages, dtype)
    tq, tk = q.shape[2], k.shape[2]
    pos = torch.arange(tq, device=q.device) + (tk - tq)
    visible = reference.causal_visibility(tq, tk, q.device)  # dense causal
    return torch.where((pos < decode_start)[:, None], visible, mask)
