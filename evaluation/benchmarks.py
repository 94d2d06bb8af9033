"""What each benchmark expects, as its reader registered it (``lorat_plugin.data.datasets.registry``): its box
convention, its protocol, its result layouts. Read by the runner (which layouts to write), the writers (1-based or
not, sequence-name prefixes) and the report (which metric definition applies).
"""
from __future__ import annotations

from lorat_plugin.data.datasets import DatasetInfo as Benchmark, dataset_info

FORMATS = ("got10k", "otb", "lasot", "pytracking", "trackingnet")


def benchmark(dataset: str | None) -> Benchmark:
    """The conventions of a benchmark key (or alias). Sequences that name no dataset (``Sequence.dataset`` is empty)
    are ``custom``: 0-based, OPE. Any other unknown key, or a dataset that is training data only, is an error."""
    info = dataset_info(dataset or "custom")
    if info.protocol is None:
        raise ValueError(f"{info.key} is training data only: no benchmark protocol scores it")
    unknown = [f for f in info.formats if f not in FORMATS]
    if unknown:  # a reader registered a layout no writer knows
        raise ValueError(f"dataset {info.key}: unknown result formats {unknown} (known: {', '.join(FORMATS)})")
    return info


__all__ = ["Benchmark", "FORMATS", "benchmark"]
