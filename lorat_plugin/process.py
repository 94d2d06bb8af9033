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
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_TUNED = False

THREADS_VARIABLE = "LORAT_THREADS"
# variables torch itself reads for its thread count (PyTorch's aten/src/ATen/ParallelCommon.cpp)
TORCH_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
LOWERED = "fewer than torch's"  # how the reason of a lowered count starts
# a CPU counts as taken when other processes keep it busy at least this share of the time
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


def choose_threads(requested: int | None = None) -> ThreadChoice:
    """Set torch's intra-op thread count for this process, once, and return it with the reason.

    ``requested`` (the CLI's ``--threads``) is set as given, and so is ``LORAT_THREADS=N``; with ``OMP_NUM_THREADS``
    or ``MKL_NUM_THREADS`` set, or ``LORAT_THREADS=torch``, torch's count is kept. Otherwise the count is torch's,
    lowered to the CPUs of this process's affinity that other processes leave free and to the container's CPU quota;
    never raised. Later calls without ``requested`` return the first choice."""
    global _CHOICE
    import torch

    if requested is not None:
        if requested < 1:
            raise ValueError(f"the thread count must be at least 1, got {requested}")
        _CHOICE = ThreadChoice(requested, "asked for (--threads)")
        torch.set_num_threads(requested)
    elif _CHOICE is None:
        _CHOICE = _decide(torch.get_num_threads())
        if _CHOICE.threads != torch.get_num_threads():
            torch.set_num_threads(_CHOICE.threads)
    else:
        return _CHOICE
    lowered = _CHOICE.reason.startswith(LOWERED)  # worth a line by default: the run is slower than alone
    log.log(logging.INFO if lowered else logging.DEBUG, "%d intra-op thread%s: %s", _CHOICE.threads,
            "" if _CHOICE.threads == 1 else "s", _CHOICE.reason)
    cpus = usable_cpus()
    if cpus is not None and _CHOICE.threads > cpus:
        log.warning("%d threads (%s) on %d usable CPUs: threads beyond the CPUs wait for each other at every step, "
                    "which slows tracking down, often many times (the boxes stay the same)", _CHOICE.threads,
                    _CHOICE.reason, cpus)
    return _CHOICE


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
        return ThreadChoice(threads, "torch's count; no CPU busy with other processes")
    return ThreadChoice(threads, f"{LOWERED} {current}: " + "; ".join(reasons))


@dataclass(frozen=True)
class FreeCpus:
    cpus: int    # CPUs this process may run on
    busy: float  # CPUs' worth of time other processes used during the measurement
    free: int    # CPUs not taken by other processes (a CPU is taken from TAKEN_SHARE of its time)


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
        name, *fields = line.split()
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        values = [int(value) for value in fields[:8]]
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
    return (busy, total) if total else None


def _own_ticks() -> float:
    """This process's CPU time (all its threads) in clock ticks."""
    times = os.times()
    return (times.user + times.system) * os.sysconf("SC_CLK_TCK")


def cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The CPUs a cgroup quota allows this process (``docker --cpus``, Kubernetes limits), rounded up; ``None``
    without one. cgroup v2 ``cpu.max`` of this process's group, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``."""
    try:
        group = _own_cgroup()
    except OSError:
        return None
    candidates = [(root / group.lstrip("/") / "cpu.max", None), (root / "cpu.max", None)]
    candidates += [(root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"),
                   (root / "cpu,cpuacct" / "cpu.cfs_quota_us", root / "cpu,cpuacct" / "cpu.cfs_period_us")]
    for quota_file, period_file in candidates:
        try:
            if period_file is None:
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        try:
            return max(1, math.ceil(int(quota) / int(period)))
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _own_cgroup() -> str:
    """This process's cgroup v2 path ("0::/path" in /proc/self/cgroup), or "/"."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return "/"
