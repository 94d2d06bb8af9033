"""Process-wide tuning for CPU inference, decided once per process: glibc's allocator thresholds and torch's intra-op
thread count. The ``lorat`` command makes both at its start and a CPU :class:`~lorat_plugin.engine.TrackingEngine`
when it is built, so the got10k tracker, the TraX program and any Python program get them too. Neither changes a
number the network computes: boxes are bit-identical at every thread count (``tests/test_threads.py``).

*Allocator.* glibc ``mmap``s allocations above 128 KiB-32 MiB and ``munmap``s them on free, so every large
activation costs page faults and zeroing; raised mmap/trim thresholds let freed blocks be reused.
``LORAT_NO_MALLOC_TUNING=1`` declines.

*Threads.* OpenMP's threads meet at a barrier after every parallel region, so one thread that shares its core with
another process holds all the others up: with one of two cores busy, two threads run at 0.6x the speed one thread
gets on the free core (docs/speed.md, "Shared machines and the first pass"). :func:`choose_threads` therefore runs no
more threads than the CPUs other processes leave free (measured over a fifth of a second from ``/proc/stat``) and
than a container's CPU quota allows (cgroup ``cpu.max``; torch counts the host's cores). ``--threads N``,
``LORAT_THREADS=N``, ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` fix the count instead; ``LORAT_THREADS=torch`` keeps
torch's. How idle OpenMP threads wait (``OMP_WAIT_POLICY``) is left to the user: docs/speed.md has the measurements
behind that choice.
"""
from __future__ import annotations

import ctypes
import logging
import math
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_TUNED = False

THREADS_VARIABLE = "LORAT_THREADS"
# variables torch itself reads for its thread count (PyTorch's aten/src/ATen/ParallelCommon.cpp)
TORCH_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
LOWERED = "fewer than torch's"  # how the reason of a lowered count starts
# other processes' busy time, in CPUs, is rounded to whole CPUs taken: from this fraction of a CPU up
TAKEN_SHARE = 0.5


def tune_cpu_allocator() -> bool:
    """Keep large CPU tensors in glibc's heap instead of fresh ``mmap`` pages; returns whether it is tuned.
    Idempotent, Linux/glibc only."""
    global _TUNED
    if _TUNED or os.environ.get("LORAT_NO_MALLOC_TUNING") or platform.system() != "Linux":
        return _TUNED
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    _TUNED = bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    log.debug("glibc allocator tuned for large tensors: %s", _TUNED)
    return _TUNED


@dataclass(frozen=True)
class ThreadChoice:
    """torch's intra-op thread count for this process and why it is that count (for logs)."""
    threads: int
    reason: str


_CHOICE: ThreadChoice | None = None
_CHOOSING = threading.Lock()


def choose_threads(requested: int | None = None, *, reason: str = "asked for (--threads)") -> ThreadChoice:
    """Set torch's intra-op thread count for this process, once, and return it with the reason.

    ``requested`` (the CLI's ``--threads``; ``reason`` says where it came from) is set as given, and so is
    ``LORAT_THREADS=N``; with ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set, or ``LORAT_THREADS=torch``, torch's
    count is kept. Otherwise the count is torch's (also one set by ``torch.set_num_threads`` before), lowered to the
    CPUs of this process's affinity that other processes leave free and to a cgroup CPU quota; never raised. Later
    calls without ``requested`` return the first choice. Thread-safe: one thread measures, the others wait for it."""
    global _CHOICE
    import torch

    with _CHOOSING:
        if requested is not None:
            if requested < 1:
                raise ValueError(f"the thread count must be at least 1, got {requested}")
            _CHOICE = ThreadChoice(requested, reason)
            torch.set_num_threads(requested)
        elif _CHOICE is None:
            _CHOICE = _decide(torch.get_num_threads())
            if _CHOICE.threads != torch.get_num_threads():
                torch.set_num_threads(_CHOICE.threads)
        else:
            return _CHOICE
        choice = _CHOICE
    lowered = choice.reason.startswith(LOWERED)  # worth a line by default: the run is slower than alone
    log.log(logging.INFO if lowered else logging.DEBUG, "%d intra-op thread%s: %s", choice.threads,
            "" if choice.threads == 1 else "s", choice.reason)
    cpus = usable_cpus()
    if cpus is not None and choice.threads > cpus:
        log.warning("%d threads (%s) on %d usable CPUs: threads beyond the CPUs wait for each other at every step, "
                    "which slows tracking down, often many times (the boxes stay the same)", choice.threads,
                    choice.reason, cpus)
    return choice


def usable_cpus() -> int | None:
    """The CPUs this process may run on (its affinity; all of them where the platform has none)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _decide(current: int) -> ThreadChoice:
    setting = os.environ.get(THREADS_VARIABLE, "").strip()
    if setting.lower() == "torch":
        return ThreadChoice(current, f"torch's count ({THREADS_VARIABLE}=torch)")
    if setting:
        try:
            threads = int(setting)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ValueError(f"{THREADS_VARIABLE}={setting!r}: expected a whole number >= 1, or 'torch' to keep "
                             "torch's thread count")
        return ThreadChoice(threads, f"{THREADS_VARIABLE}={threads}")
    for name in TORCH_THREAD_VARIABLES:
        if os.environ.get(name, "").strip():
            return ThreadChoice(current, f"torch's count ({name}={os.environ[name].strip()})")
    if current <= 1:  # nothing to lower: no measurement
        return ThreadChoice(current, "torch's count")
    threads, reasons = current, []
    quota = cpu_quota()
    if quota is not None and quota < threads:
        threads = quota
        reasons.append(f"the CPU quota of this container ({quota} CPUs)")
    free = free_cpus()
    if free is not None and free.free < threads:
        threads = max(1, free.free)
        reasons.append(f"{free.busy:.1f} of {free.cpus} CPUs busy with other processes")
    if not reasons:
        measured = "no CPU busy with other processes" if free is not None else "free CPUs not measured here"
        return ThreadChoice(threads, f"torch's count; {measured}")
    return ThreadChoice(threads, f"{LOWERED} {current}: " + "; ".join(reasons))


@dataclass(frozen=True)
class FreeCpus:
    cpus: int    # CPUs this process may run on
    busy: float  # CPUs' worth of time other processes used during the measurement
    free: int    # CPUs not taken by other processes (busy rounded to whole CPUs, from TAKEN_SHARE up)


def free_cpus(window: float = 0.2, stat: Path = Path("/proc/stat")) -> FreeCpus | None:
    """How many of this process's CPUs other processes leave free, measured over ``window`` seconds from the
    kernel's per-CPU time counters (this process's own time excluded); ``None`` where they cannot be read."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not Linux
        return None
    before, own_before = _cpu_ticks(stat, cpus), _own_ticks()
    if before is None:
        return None
    time.sleep(window)
    after, own_after = _cpu_ticks(stat, cpus), _own_ticks()
    if after is None:
        return None
    busy_ticks, total_ticks = after[0] - before[0], after[1] - before[1]
    if total_ticks <= 0:
        return None
    ticks_per_cpu = total_ticks / len(cpus)
    others = max(0.0, busy_ticks - (own_after - own_before)) / ticks_per_cpu
    free = len(cpus) - math.floor(others + 1 - TAKEN_SHARE)
    return FreeCpus(cpus=len(cpus), busy=others, free=max(0, free))


def _cpu_ticks(stat: Path, cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks since boot summed over ``cpus``; steal time counts as busy (another virtual
    machine had the core)."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split() or [""]
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is already in user); older kernels have fewer
        try:
            values = [int(value) for value in fields[:8]]
        except ValueError:
            return None
        if len(values) < 4:
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total += sum(values)
        busy += sum(values) - idle
    return (busy, total) if total else None


def _own_ticks() -> float:
    """This process's CPU time (all its threads) in clock ticks."""
    times = os.times()
    return (times.user + times.system) * os.sysconf("SC_CLK_TCK")


def cpu_quota(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> int | None:
    """The CPUs a cgroup quota allows this process (``docker --cpus``, Kubernetes limits, a systemd ``CPUQuota``),
    rounded up (a quota of 1.5 CPUs lets two threads run three quarters of the time, faster than one thread); the
    smallest over this process's group and the groups above it; ``None`` without one. cgroup v2 ``cpu.max``, or v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``."""
    quotas = []
    for folder in _cgroup_folders(root, membership):
        for quota_file, period_file in ((folder / "cpu.max", None),
                                        (folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")):
            try:
                if period_file is None:
                    quota, period = quota_file.read_text().split()[:2]
                else:
                    quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
                quotas.append(int(quota) / int(period))
            except (OSError, ValueError, ZeroDivisionError):  # absent, "max" / "-1" (no quota), or malformed
                continue
    positive = [quota for quota in quotas if quota > 0]
    return max(1, math.ceil(min(positive))) if positive else None


def _cgroup_folders(root: Path, membership: Path) -> list[Path]:
    """This process's cgroup folders under ``root`` and every folder above them up to ``root``: the v2 group
    ("0::/path" in ``membership``, /proc/self/cgroup) and the v1 ``cpu`` controller's (mounted at ``cpu`` or
    ``cpu,cpuacct``; in a container its own group is the mount's root, where the path named does not exist)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    groups: list[tuple[Path, str]] = [(root, "/")]
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if line.startswith("0::"):
            groups.append((root, path))
        elif "cpu" in controllers.split(","):
            groups += [(root / mount, path) for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
    folders: list[Path] = []
    for base, path in groups:
        folder = base / path.strip("/")
        while True:
            if folder not in folders:
                folders.append(folder)
            if folder == base:
                break
            folder = folder.parent
        if base not in folders:
            folders.append(base)
    return folders
