"""The one check of a kernel's page selection against the torch reference.

A selection is right when every (request, KV head) lists ``topk_pages`` pages (all its
pages when its request holds fewer), all its local pages among them, and every scored
page it chose scores at least the ``m``-th best candidate score (``m = topk_pages -
local_pages``) up to a tolerance:
pages whose scores tie (float32 summation order) may swap. Used by the GPU tests and
by the in-run checks of ``kinetics bench``; runs on CPU or GPU tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinetics.attention import reference

if TYPE_CHECKING:
    import torch

    from kinetics.attention.cache import PagedKVCache


@dataclass(frozen=True)
class SelectionCheck:
    """Outcome of :func:`check_selection`.

    Attributes:
        identical_fraction: share of (request, KV head) rows whose pages equal the
            reference's exactly.
        counts_ok: every row lists ``min(topk_pages, pages held)`` pages.
        locals_ok: every row lists all its local pages.
        scores_ok: every chosen candidate scores >= the m-th best minus the tolerance,
            and none lies past the request's last page.
    """

    identical_fraction: float
    counts_ok: bool
    locals_ok: bool
    scores_ok: bool

    @property
    def passed(self) -> bool:
        return self.counts_ok and self.locals_ok and self.scores_ok


def check_selection(selected: torch.Tensor, q: torch.Tensor, cache: PagedKVCache,
                    topk_pages: int, local_pages: int, rel_tol: float = 1e-3
                    ) -> SelectionCheck:
    """Check a bool ``[batch, kv_heads, max_pages]`` page mask against the reference.

    ``rel_tol`` scales each row's largest absolute score into the tie tolerance
    (plus 1e-6 absolute).
    """
    import torch

    want = reference.select_pages(q, cache, topk_pages, local_pages)
    scores = reference.page_scores(q, cache)  # [B, H, P], -inf past the last page
    n = cache.num_request_pages()[:, None]
    pos = torch.arange(scores.shape[-1], device=scores.device)[None, :]
    is_local = ((pos >= n - local_pages) & (pos < n))[:, None, :]
    owned = (pos < n)[:, None, :]
    cand = ~is_local & torch.isfinite(scores)
    finite = scores.masked_fill(~torch.isfinite(scores), 0)
    tol = rel_tol * finite.abs().amax(-1, keepdim=True) + 1e-6
    kth = scores.masked_fill(~(want & cand), float("inf")).amin(-1, keepdim=True)
    picked = scores.masked_fill(~(selected & cand), float("inf"))
    return SelectionCheck(
        identical_fraction=float((selected == want).all(dim=-1).float().mean()),
        counts_ok=bool((selected.sum(-1) == n.clamp(max=topk_pages)).all()),
        locals_ok=bool((selected & is_local).sum(-1).eq(is_local.sum(-1)).all()),
        scores_ok=bool((picked >= kth - tol).all()) and not bool((selected & ~owned).any()),
    )
