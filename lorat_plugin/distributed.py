"""The one `torchrun` set-up (torch.distributed's own launcher; nothing home-made) for training and evaluation.

``torchrun --nproc-per-node N -m lorat_plugin.cli train ...`` (or ``... evaluate``) sets RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous variables; a plain command is one process without a process group.
Each process takes the GPU of its LOCAL_RANK; NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import datetime
import logging
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
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


class PeerLost(ConnectionError):
    """Another process of the torchrun run ended (or its connection broke) while this one waited for it. An OSError:
    the command reports it in one line, and rerunning the same command continues the run."""


def _is_peer_failure(error: BaseException) -> bool:
    # gloo reports a peer that died as a RuntimeError from its TCP transport ("Connection closed by peer",
    # "Connection reset by peer"); NCCL and the rendezvous store raise torch's DistError family.
    families = tuple(getattr(dist, name) for name in ("DistError", "DistBackendError") if hasattr(dist, name))
    return isinstance(error, families) or "gloo/transport" in str(error)


@contextmanager
def peer_failures(what: str, resume_hint: str) -> Iterator[None]:
    """Turn a collective that failed because another rank is gone into one :class:`PeerLost` line naming it.

    A rank killed under torchrun is mostly handled by torchrun itself: its agent sees the worker's exit within a
    fraction of a second, stops the other workers and prints which rank failed first. What is left to us is the
    survivor that reaches a collective before the agent stops it (or whose peer ran under another agent, on another
    node): gloo then fails the collective at once ("Connection closed by peer"), and this names the rank instead of
    printing a traceback. A peer that hangs without closing its connection is not seen here: that is what the
    process group's timeout is for.
    """
    grouped = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if grouped else (0, 1)  # the group may be gone by then
    try:
        yield
    except Exception as error:
        if world == 1 or not _is_peer_failure(error):
            raise
        # with two processes the lost one is the other; beyond, gloo names only an address
        lost = f"rank {1 - rank}" if world == 2 else "another rank (torchrun's report names it)"
        reason = _first_line(error)
        raise PeerLost(f"rank {rank} of {world}: {lost} ended or lost its connection during {what} ({reason}); "
                       f"{resume_hint}") from error


def _first_line(error: BaseException) -> str:
    """gloo's message without its source location and advice: "Connection closed by peer [10.0.0.2]:41234"."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return re.sub(r"^\[[^\]]*\]\s*", "", lines[0]).split(". This is typically")[0]


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


# A test hook, not a setting: ``LORAT_TEST_SIGKILL=RANK:POINT:N`` makes process RANK kill itself with SIGKILL (no
# clean-up, no exception: what the OOM killer or a lost machine does) at the N-th time it passes POINT
# ("train-step": an optimiser step done, "record": an evaluation record written). tests/test_torchrun_killed_rank.py
# uses it to kill rank 1 at a known point of a torchrun run.
TEST_SIGKILL_VARIABLE = "LORAT_TEST_SIGKILL"
_passed: dict[str, int] = {}


def sigkill_hook(point: str) -> None:
    """Count one pass of ``point`` and SIGKILL this process if :data:`TEST_SIGKILL_VARIABLE` names this pass."""
    wanted = os.environ.get(TEST_SIGKILL_VARIABLE)
    if not wanted:
        return
    rank, wanted_point, count = wanted.split(":")
    _passed[point] = _passed.get(point, 0) + 1
    if point == wanted_point and int(rank) == int(os.environ.get("RANK", "0")) and _passed[point] == int(count):
        log.warning("%s=%s: rank %s kills itself (test hook)", TEST_SIGKILL_VARIABLE, wanted, rank)
        os.kill(os.getpid(), signal.SIGKILL)
