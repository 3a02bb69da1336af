"""Data parallel generation under ``torchrun``: each rank takes a shard of the problems.

Ranks come from the ``RANK`` / ``WORLD_SIZE`` environment that ``torchrun`` sets; with
more than one, a gloo process group gives the barriers (rank 0 merges the shards every
rank wrote). Without it, one process does everything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def rank_info() -> tuple[int, int]:
    """``(rank, world size)`` from the environment (``(0, 1)`` outside torchrun)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _group_ready() -> bool:
    rank, world = rank_info()
    if world == 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=rank, world_size=world)
    return True


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if _group_ready():
        import torch.distributed as dist

        dist.barrier()


def finish() -> None:
    """Tear the process group down, if there is one."""
    if rank_info()[1] > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s share: every ``world``-th item starting at ``rank``."""
    return list(items[rank::world])
