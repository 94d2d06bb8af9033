"""What each benchmark expects: its box convention, its official metric, its result layouts.

One table, read by the runner (which layouts to write), the writers (1-based or not, sequence-name prefixes) and the
report (which metric definition applies).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    key: str
    title: str
    one_based: bool            # files use 1-based MATLAB pixels (internal boxes are 0-based)
    protocol: str              # "got10k" | "ope" | "trackingnet": the headline metric definition (metrics.py)
    ope_kind: str = "generic"  # pytracking's rule for invalid frames: "lasot" | "uav" | "generic"
    formats: tuple[str, ...] = ("pytracking",)  # layouts written by default; the first is the one the report reads
    also_got10k_otb: bool = False  # also compute got10k's ExperimentOTB numbers (OTB, UAV123, NfS)
    also_lasot_toolkit: bool = False  # also compute the LaSOT MATLAB toolkit's numbers (LaSOT, LaSOT_ext)
    pytracking_prefix: str = ""    # pytracking's sequence-name prefix (uav_, nfs_)


BENCHMARKS: dict[str, Benchmark] = {
    "got10k": Benchmark("got10k", "GOT-10k", False, "got10k", formats=("got10k",)),
    "lasot": Benchmark("lasot", "LaSOT", True, "ope", "lasot", formats=("lasot", "pytracking"),
                       also_lasot_toolkit=True),
    "lasot_ext": Benchmark("lasot_ext", "LaSOT_ext", True, "ope", "lasot", formats=("lasot", "pytracking"),
                           also_lasot_toolkit=True),
    "trackingnet": Benchmark("trackingnet", "TrackingNet", False, "trackingnet",
                             formats=("trackingnet", "pytracking")),
    "otb": Benchmark("otb", "OTB100", True, "ope", "generic", formats=("otb", "pytracking"), also_got10k_otb=True),
    "uav123": Benchmark("uav123", "UAV123", False, "ope", "uav", formats=("otb", "pytracking"), also_got10k_otb=True,
                        pytracking_prefix="uav_"),
    "nfs": Benchmark("nfs", "NfS (30 fps)", False, "ope", "generic", formats=("otb", "pytracking"),
                     also_got10k_otb=True, pytracking_prefix="nfs_"),
    "tnl2k": Benchmark("tnl2k", "TNL2K", False, "ope", "generic", formats=("lasot", "pytracking")),
}

FORMATS = ("got10k", "otb", "lasot", "pytracking", "trackingnet")


def benchmark(dataset: str) -> Benchmark:
    """The benchmark description of a dataset key; unknown datasets get a neutral 0-based OPE description."""
    return BENCHMARKS.get(dataset) or Benchmark(dataset or "custom", dataset or "custom", False, "ope")

