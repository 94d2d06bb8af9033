"""OTB-2013/OTB-100 (Wu et al., TPAMI 2015): ``root/<Seq>/img/*.jpg``, ``groundtruth_rect*.txt`` (1-based, converted).

Read through ``got10k.datasets.OTB`` (``download=False``): its official lists, special frame ranges and two-target
names (``Jogging.1``) are those of ``ExperimentOTB``. Splits: ``otb100`` (default), ``otb2013``, ``tb50``.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..sequence import Sequence
from ._got10k_toolkit import import_got10k_datasets, load_sequences, quietly
from ..annotations import require_dir
from .registry import DatasetInfo, register

VERSIONS = {"otb100": 2015, "otb2015": 2015, "tb100": 2015, "2015": 2015, "otb": 2015,
            "otb2013": 2013, "2013": 2013, "tb50": "tb50", "otb50": "tb50"}


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "OTB")
    key = (split or "otb100").lower()
    if key not in VERSIONS:
        raise ValueError(f"unknown OTB split {split!r} (expected one of {', '.join(VERSIONS)})")
    dataset = quietly(import_got10k_datasets().OTB, str(root), VERSIONS[key], download=False)
    if len(dataset) == 0:
        raise FileNotFoundError(f"no OTB sequences (<Seq>/groundtruth_rect.txt with an official name) under {root}")
    logging.getLogger(__name__).debug("OTB %s: %d sequences found under %s", key, len(dataset), root)
    return load_sequences(dataset, "otb", {"version": key}, one_based=True)


register(DatasetInfo("otb", "OTB100", load, splits=("otb100", "otb2013", "tb50"), default_split="otb100",
                     one_based=True, formats=("otb", "pytracking"), also_got10k_otb=True,
                     aliases=("otb100", "otb2015")))
