"""Interleaved timing: every repeat runs each candidate once, in turn, so a change in the machine's load during the
run hits every candidate alike; figures are medians over repeats and ratios medians of per-repeat ratios."""
from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable, Sequence

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_interleaved(candidates: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1,
                     device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Seconds per call of each candidate, ``repeats`` samples each, taken round-robin after ``warmup`` untimed
    rounds (the device is synchronised around every call)."""
    device = torch.device(device)
    for _ in range(warmup):
        for call in candidates.values():
            call()
    synchronize(device)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, call in candidates.items():
            start = time.perf_counter()
            call()
            synchronize(device)
            samples[name].append(time.perf_counter() - start)
    return samples


def _ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """The per-repeat ratios: samples taken in the same round are paired."""
    return [n / d for n, d in zip(numerator, denominator)]


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of the per-repeat ratios."""
    return float(statistics.median(_ratios(numerator, denominator)))


def ratio_range(numerator: Sequence[float], denominator: Sequence[float]) -> tuple[float, float]:
    """The smallest and the largest per-repeat ratio: the spread to read a :func:`median_ratio` against (a margin
    smaller than it is not shown)."""
    ratios = _ratios(numerator, denominator)
    return min(ratios), max(ratios)


def load_average() -> float | None:
    """The machine's one-minute load average, printed beside timings (``None`` where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        return None
