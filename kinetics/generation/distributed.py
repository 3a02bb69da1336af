"""Parallel generation under ``torchrun``: data parallel over problems, and tensor
parallel inside each data-parallel group (the paged engine's model shards).

Ranks come from the ``RANK`` / ``WORLD_SIZE`` environment that ``torchrun`` sets; with
more than one, a gloo process group gives the barriers (rank 0 merges the shards the
groups' leaders wrote). With ``tp`` ranks per model, consecutive ranks form a
tensor-parallel group (:class:`Layout`): they run one model shard each, in lockstep, on
the same problems; the group's first rank writes its shards. Without torchrun, one
process does everything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kinetics.errors import InputError

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


@dataclass(frozen=True)
class Layout:
    """Where this process sits: ``rank`` of ``world``; data-parallel group ``dp_rank`` of
    ``dp_world``, position ``tp_rank`` in its ``tp`` tensor-parallel ranks."""

    rank: int
    world: int
    tp: int

    @property
    def dp_rank(self) -> int:
        return self.rank // self.tp

    @property
    def dp_world(self) -> int:
        return self.world // self.tp

    @property
    def tp_rank(self) -> int:
        return self.rank % self.tp

    @property
    def leader(self) -> bool:
        """Whether this rank writes its data-parallel group's results."""
        return self.tp_rank == 0


def layout(tp: int = 1) -> Layout:
    """This process's :class:`Layout` for ``tp`` ranks per model (InputError when the
    world does not divide into groups of ``tp``)."""
    rank, world = rank_info()
    if tp < 1 or world % tp:
        raise InputError(f"--tp {tp} needs a multiple of {tp} processes, found {world}: "
                         f"launch with torchrun --nproc-per-node {max(tp, 1)} -m kinetics "
                         "generate ...")
    return Layout(rank, world, tp)


def tp_group(where: Layout) -> Any:
    """This rank's tensor-parallel process group (None for ``tp`` 1). Every rank creates
    every group, in order, as torch.distributed requires."""
    if where.tp == 1:
        return None
    _group_ready()
    import torch.distributed as dist

    mine = None
    for first in range(0, where.world, where.tp):
        group = dist.new_group(list(range(first, first + where.tp)))
        if first == where.dp_rank * where.tp:
            mine = group
    return mine
