"""Process-wide tuning for CPU inference, once per process: how idle OpenMP threads wait, and glibc's allocator.

Neither changes a number the network computes (boxes are bit-identical with and without, ``tests/test_process.py``);
both change how the tracker shares a machine and how its first frames go (measured in docs/speed.md, "Shared
machines and the first pass"):

* **OpenMP wait policy.** Between parallel regions torch's OpenMP threads spin for a while before sleeping; on a
  machine where another process wants a core, the spinning threads take it, and both slow down far more than
  sharing explains. ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep at once. OpenMP reads the variable when torch loads,
  so :func:`prefer_passive_wait` sets it then (the ``lorat`` command first thing, ``import lorat_plugin`` when it
  comes before ``import torch``) unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` already;
  ``LORAT_NO_WAIT_TUNING=1`` declines. When torch was loaded first, the engine says so once (:func:`tune_for_cpu`).
* **glibc allocator.** glibc ``mmap``s allocations above 128 KiB-32 MiB and ``munmap``s them on free, so every
  large activation costs page faults and zeroing; raised mmap/trim thresholds let freed blocks be reused.
  ``LORAT_NO_MALLOC_TUNING=1`` declines.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from typing import MutableMapping

log = logging.getLogger(__name__)
WAIT_POLICY = "PASSIVE"
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_wait: str | None = None  # what prefer_passive_wait found: "set", "user", "declined" or "too late"
_TUNED = False
_told = False


def prefer_passive_wait(environ: MutableMapping[str, str] | None = None) -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process if it can still take effect and nobody chose otherwise.
    Returns ``"set"``, ``"user"`` (a wait variable is set already), ``"declined"`` (``LORAT_NO_WAIT_TUNING``) or
    ``"too late"`` (torch is loaded: its OpenMP runtime has read the environment)."""
    global _wait
    environ = os.environ if environ is None else environ
    if environ.get("LORAT_NO_WAIT_TUNING", "").strip() not in ("", "0"):
        state = "declined"
    elif any(name in environ for name in _WAIT_VARIABLES):
        state = "user"
    elif "torch" in sys.modules:
        state = "too late"
    else:
        environ["OMP_WAIT_POLICY"] = WAIT_POLICY
        state = "set"
    if _wait is None or state != "too late":  # the first answer that could act is the one that counts
        _wait = state
    return state


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


def tune_for_cpu() -> None:
    """What a CPU engine needs from its process, once: the allocator tuned, and one warning when the wait policy
    could not be set because torch was imported before ``lorat_plugin``."""
    global _told
    tune_cpu_allocator()
    if _wait == "too late" and not _told:
        _told = True
        log.warning("torch was imported before lorat_plugin, so OMP_WAIT_POLICY=%s could not be set: on a machine "
                    "shared with other work, start Python with OMP_WAIT_POLICY=%s in the environment (or import "
                    "lorat_plugin first); docs/speed.md, 'Shared machines'", WAIT_POLICY, WAIT_POLICY)
