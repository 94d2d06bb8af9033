"""Process-wide tuning for CPU inference, once per process: glibc's allocator thresholds.

glibc ``mmap``s allocations above 128 KiB-32 MiB and ``munmap``s them on free, so every large activation costs page
faults and zeroing; raised mmap/trim thresholds let freed blocks be reused. The ``lorat`` command sets them at its
start and a CPU :class:`~lorat_plugin.engine.TrackingEngine` when it is built (so the got10k tracker, the TraX program
and any Python program get them too); ``LORAT_NO_MALLOC_TUNING=1`` declines. It changes no number the network
computes. How idle OpenMP threads wait (``OMP_WAIT_POLICY``) is left to the user: docs/speed.md, "Shared machines
and the first pass", has the measurements behind that choice.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)
_TUNED = False


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
