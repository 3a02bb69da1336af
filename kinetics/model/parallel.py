"""Tensor-parallel sharding and the process group (torch imports lazily).

* :func:`shard_plan` -> :class:`ShardPlan`: which heads and MLP columns a rank holds;
  the one sharding rule, used by the layer and the benchmarks.
* :func:`init_distributed` / :func:`shutdown_distributed`: join or create the
  torch.distributed group torchrun describes (NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kinetics.errors import InputError
from kinetics.models import ModelSpec


def mlp_width(model: ModelSpec) -> int:
    """Dense MLP width the layer runs: intermediate_size, or the active experts' width for MoE."""
    if model.is_moe:
        return model.experts_per_token * model.moe_intermediate_size
    return model.intermediate_size


@dataclass(frozen=True)
class ShardPlan:
    """One rank's slice of a layer under tensor parallelism (the only sharding rule).

    Attributes:
        q_start, local_q_heads: first query head and query heads this rank holds.
        kv_start, local_kv_heads: first KV head and KV heads this rank holds.
        kv_replicas: ranks that hold a copy of each KV head (1 unless tp > KV heads).
        mlp_start, local_mlp: first column and width of this rank's MLP slice.
    """

    q_start: int
    local_q_heads: int
    kv_start: int
    local_kv_heads: int
    kv_replicas: int
    mlp_start: int
    local_mlp: int


def shard_plan(model: ModelSpec, tp_size: int, tp_rank: int) -> ShardPlan:
    """This rank's slice of heads and MLP width; raises InputError if tp_size doesn't fit.

    Query heads: ``num_q_heads % tp_size == 0``. KV heads are split when ``tp_size``
    divides them and replicated (1 per rank, on ``tp_size / kv`` ranks each) when they
    divide ``tp_size``, as in vLLM/SGLang. MLP width: ``mlp_width % tp_size == 0``.
    """
    if tp_size < 1:
        raise InputError(f"tensor-parallel size must be >= 1, got {tp_size}")
    if not 0 <= tp_rank < tp_size:
        raise InputError(f"tp_rank {tp_rank} outside [0, {tp_size})")
    q, kv, width = model.num_q_heads, model.num_kv_heads, mlp_width(model)
    if q % tp_size:
        raise InputError(f"{model.name}: {q} query heads do not divide by tp {tp_size}")
    if kv <= 0 or q % kv:
        raise InputError(f"{model.name}: {q} query heads are not a multiple of {kv} KV heads")
    if kv % tp_size == 0:
        local_kv, replicas = kv // tp_size, 1
        kv_start = tp_rank * local_kv
    elif tp_size % kv == 0:
        local_kv, replicas = 1, tp_size // kv
        kv_start = tp_rank // replicas
    else:
        raise InputError(f"{model.name}: {kv} KV heads neither divide by tp {tp_size} "
                         "nor divide it (no replication scheme)")
    if width % tp_size:
        raise InputError(f"{model.name}: MLP width {width} does not divide by tp {tp_size}")
    local_q, local_mlp = q // tp_size, width // tp_size
    return ShardPlan(q_start=tp_rank * local_q, local_q_heads=local_q, kv_start=kv_start,
                     local_kv_heads=local_kv, kv_replicas=replicas,
                     mlp_start=tp_rank * local_mlp, local_mlp=local_mlp)



@dataclass(frozen=True)
class ParallelInfo:
    """This process's place in the group.

    Attributes:
        rank, world_size, local_rank: from torchrun's environment (or the group).
        device: this rank's torch device (``cuda:local_rank``, or cpu).
        backend: ``nccl``, ``gloo`` or ``none`` (no group).
        group: the world group, None without one.
        created: whether :func:`init_distributed` created the group (then
            :func:`shutdown_distributed` destroys it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: Any
    backend: str
    group: Any
    created: bool


def init_distributed(tp: int) -> ParallelInfo:
    """Join (or create) the process group torchrun describes; pick this rank's device.

    Reads RANK, WORLD_SIZE and LOCAL_RANK (torchrun sets them, with MASTER_ADDR and
    MASTER_PORT). Sets ``NCCL_NVLS_ENABLE=0`` (and
    ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``) before initializing. Backend: nccl if
    CUDA is available, else gloo. With tp == 1 and no WORLD_SIZE, no group is made.

    Returns a :class:`ParallelInfo`.
    """
    import torch
    import torch.distributed as dist

    # NVLink multicast (NVLS) stays off: set before any process group or NCCL comm exists
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"] = "1"
    cuda = torch.cuda.is_available()
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        created = False
        cuda = cuda and "nccl" in str(dist.get_backend()).lower()  # a gloo group: CPU tensors
    else:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        created = world > 1
    if world != tp:
        raise InputError(f"--tp {tp} needs {tp} processes, found {world}: launch with "
                         f"torchrun --nproc-per-node {tp} -m kinetics bench --distributed --tp {tp} ...")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = "nccl" if cuda else "gloo"
    if created:
        kwargs = {"device_id": device} if cuda else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    group = dist.group.WORLD if dist.is_initialized() else None
    if dist.is_initialized():
        backend = dist.get_backend()
    return ParallelInfo(rank=rank, world_size=world, local_rank=local_rank, device=device,
                        backend=backend if group is not None else "none", group=group,
                        created=created)


def shutdown_distributed(info: ParallelInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    import torch.distributed as dist

    if info.created and dist.is_initialized():
        dist.destroy_process_group()


def gather_rows(values: list[float], group, device) -> list[list[float]]:
    """Every rank's ``values`` (rank order, float64 via all_gather); one row without a group."""
    import torch
    import torch.distributed as dist

    if group is None:
        return [list(values)]
    t = torch.tensor(values, dtype=torch.float64, device=device)
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t, group=group)
    return [o.cpu().tolist() for o in out]
