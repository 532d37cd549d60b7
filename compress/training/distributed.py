"""Training in several processes (torchrun): who is who, and waiting for the main process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (one process, rank 0, when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_from_env() -> Distributed:
    """torchrun sets RANK, WORLD_SIZE and LOCAL_RANK for every process it starts."""
    return Distributed(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                       int(os.environ.get("LOCAL_RANK", "0")))


def join_process_group(job: Distributed, device: torch.device) -> torch.device:
    """NCCL between GPUs (one per process, by local rank), gloo on CPU; returns the device."""
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", job.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wait_for_main() -> None:
    """Block until every process reaches this point (rank 0 is the slow one: it saves)."""
    import torch.distributed as dist

    dist.barrier()


def from_main(value):
    """Rank 0's `value`, in every process (any picklable object)."""
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
