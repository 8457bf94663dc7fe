"""DistributedDataParallel set-up: under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) join
the process group, gloo on CPU and nccl on GPU; otherwise a single process. Each rank takes its rows of every
global batch (``trilogy.objectives.Batches(rank=, world_size=)``), so N processes with per-rank batch b compute
what one process computes with batch N*b."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def sum(self, value: Tensor) -> Tensor:
        """The sum of ``value`` over all ranks (a float64 copy; the input is left alone)."""
        total = value.detach().to(self.device, torch.float64).clone()
        if self.enabled:
            dist.all_reduce(total)
        return total

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup(device: str | None = None) -> Distributed:
    """Join the process group when launched by torchrun; pick the device (``cuda:LOCAL_RANK`` when CUDA is
    available, else CPU) unless ``device`` is given."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Distributed(rank, world_size, chosen)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
