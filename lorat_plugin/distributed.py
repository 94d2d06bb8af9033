"""The one `torchrun` set-up (torch.distributed's own launcher; nothing home-made) for training and evaluation.

``torchrun --nproc-per-node N -m lorat_plugin.cli train ...`` (or ``... evaluate``) sets RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous variables; a plain command is one process without a process group.
Each process takes the GPU of its LOCAL_RANK; NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .devices import parse_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)


def local_device(device: str | None = None, key: str = "device") -> torch.device:
    """This process's device, made current on CUDA: ``None``/``"auto"`` is the local rank's GPU when CUDA is
    available, else the CPU; ``"cuda"`` is the local rank's GPU. Under torchrun with several processes an explicit
    GPU index would put every rank on that one GPU, so it is refused (``key`` names the setting in the error)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None or device == "auto":
        chosen = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    else:
        chosen = parse_device(device, setting=key)
        if chosen.type == "cuda":
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            if chosen.index is not None and world_size > 1:
                raise ValueError(f"{key}={device} would put all {world_size} torchrun processes on one GPU: use "
                                 f"{key}=cuda (each process takes the GPU of its LOCAL_RANK)")
            if chosen.index is None:
                chosen = torch.device("cuda", local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    return chosen


def setup(device: str | None = None, timeout_minutes: float = 60.0, key: str = "train.device") -> Distributed:
    """Join the torchrun process group when there is one, and pick this process's device (:func:`local_device`)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    chosen = local_device(device, key)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes),
                                **({"device_id": chosen} if chosen.type == "cuda" else {}))
        log.info("rank %d/%d joined the %s process group on %s", rank, world_size, backend, chosen)
    return Distributed(rank, world_size, int(os.environ.get("LOCAL_RANK", "0")), chosen)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean over the processes of the default group (``values`` itself in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values
