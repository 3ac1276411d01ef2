"""Multi-process training with ``torch.distributed`` (DistributedDataParallel).

``caloreco train`` started by ``torchrun --nproc_per_node N`` finds ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK`` in its environment; :func:`init_from_env` joins the process group
(``gloo`` on CPU, ``nccl`` on CUDA) and returns this process's rank, world size and
device. Each rank reads its own slice of the shard-local event order
(:class:`~caloreco.training.data.ShardLocalSampler`), gradients are averaged by DDP, rank 0
writes logs and checkpoints and runs validation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from caloreco.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: str


def init_from_env(device: str) -> DistInfo:
    """Join the process group described by the torchrun environment (no-op without it).

    Args:
        device: the requested device; ``"cuda"`` becomes ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, device)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
        torch.cuda.set_device(local)
        device, backend = f"cuda:{local}", "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, device)


def any_rank(flag: bool, world_size: int) -> bool:
    """True on every rank if ``flag`` is true on any rank (a collective decision)."""
    if world_size <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_buffers(module: torch.nn.Module, world_size: int) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step each rank
    still holds the statistics of its own last batch; this makes the ranks identical.
    """
    if world_size <= 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=0)


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
