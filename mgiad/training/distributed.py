"""Data-parallel training under ``torchrun``: the process group and each process's share."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """Process-group facts; ``world == 1`` without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # this call initialised the group and must destroy it

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group that ``torchrun`` describes (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    owned = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
        owned = True
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank,
                owned=owned)


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Bounds of ``rank``'s contiguous share of ``n`` items (``torch.tensor_split`` sizes)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)
