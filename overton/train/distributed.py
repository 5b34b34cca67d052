"""One process or many under ``torchrun``: rank, world, device, and the few collectives training needs.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them this is rank 0 of 1 and no
process group is created, so ``python -m overton train`` and ``overton train`` work as they are.
The backend is NCCL on GPUs, with gloo beside it for tensors on the CPU (FSDP's CPU offload reduces the
gradient norm there), and gloo on CPUs (the tests run two gloo processes on one machine).
A rank ends with the ``torchrun`` that started it, also when that one is killed (SIGKILL leaves no
time to stop its ranks, which would go on training).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from overton.corpus.lifetime import die_with_parent


def _backend(device: torch.device) -> str:
    return "cuda:nccl,cpu:gloo" if device.type == "cuda" else "gloo"


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @classmethod
    def start(cls) -> Distributed:
        if "TORCHELASTIC_RUN_ID" in os.environ:  # a rank of torchrun, which has no way to take it down if killed
            die_with_parent(os.getppid())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(_backend(device))
        return cls(rank, world, local_rank, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, value: float | torch.Tensor) -> float:
        """The mean of ``value`` over the ranks."""
        tensor = torch.as_tensor(value, dtype=torch.float64, device=self.device).clone()
        if self.world > 1:
            dist.all_reduce(tensor)
            tensor /= self.world
        return float(tensor)

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on one of them (a stop signal reaching one rank stops all)."""
        tensor = torch.tensor(int(flag), device=self.device)
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor)

    def group(self) -> None:
        """A process group even for one process (FSDP shards over one): gloo or NCCL over an in-memory store."""
        if not dist.is_initialized():
            dist.init_process_group(_backend(self.device), store=dist.HashStore(), rank=0, world_size=1)

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value``, in rank order, on rank 0; None on the others."""
        if self.world == 1:
            return [value]
        values = [None] * self.world if self.main else None
        dist.gather_object(value, values, dst=0)
        return values

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a path, a decision, an error message)."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
