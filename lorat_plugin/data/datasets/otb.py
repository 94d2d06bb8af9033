"""OTB-2013/OTB-100 (Wu et al., TPAMI 2015): ``root/<Seq>/img/*.jpg``, ``groundtruth_rect*.txt`` (1-based, converted).

Read through ``got10k.datasets.OTB`` (``download=False``): its official lists, special frame ranges and two-target
names (``Jogging.1``) are those of ``ExperimentOTB``. Splits: ``otb100`` (default), ``otb2013``, ``tb50``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..sequence import AnnotationError, Sequence
from ._got10k_toolkit import build_dataset, import_got10k_datasets, load_sequences
from ..annotations import read_text, require_dir
from .registry import DatasetInfo, register

VERSIONS = {"otb100": 2015, "otb2015": 2015, "tb100": 2015, "2015": 2015, "otb": 2015,
            "otb2013": 2013, "2013": 2013, "tb50": "tb50", "otb50": "tb50"}


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "OTB")
    key = (split or "otb100").lower()
    if key not in VERSIONS:
        raise ValueError(f"unknown OTB split {split!r} (expected one of {', '.join(VERSIONS)})")
    toolkit = import_got10k_datasets().OTB
    dataset = build_dataset(toolkit, root, VERSIONS[key], download=False)
    _refuse_emptied_sequences(root, toolkit, VERSIONS[key], dataset.anno_files)
    if len(dataset) == 0:
        raise FileNotFoundError(f"no OTB sequences (<Seq>/groundtruth_rect.txt with an official name) under {root}")
    logging.getLogger(__name__).debug("OTB %s: %d sequences found under %s", key, len(dataset), root)
    return load_sequences(dataset, "otb", {"version": key}, one_based=True, globbed_frames=True,
                          frame_folder=lambda d, index: Path(d.seq_dirs[index]) / "img")


def _refuse_emptied_sequences(root: Path, toolkit: type, version: int | str, kept: list[str]) -> None:
    """The toolkit leaves out empty annotation files without a word (Human4's ``groundtruth_rect.1.txt`` is empty
    in the official release, its target is in ``groundtruth_rect.2.txt``). An official sequence whose every
    annotation file is empty would vanish from the results, so it is an error naming the file."""
    official = getattr(toolkit, "_OTB__version_dict", {}).get(version, ())  # the toolkit's list of this version
    kept_folders = {Path(f).parent.name for f in kept}
    for name in official:
        folder = root / name
        if name in kept_folders or not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith("groundtruth") and entry.name.endswith(".txt") and entry.is_file() \
                    and not read_text(Path(entry.path)).strip():
                raise AnnotationError(f"{entry.path}: empty annotation file (the sequence {name} would be left out)")


register(DatasetInfo("otb", "OTB100", load, splits=("otb100", "otb2013", "tb50"), default_split="otb100",
                     one_based=True, formats=("otb", "pytracking"), also_got10k_otb=True,
                     aliases=("otb100", "otb2015")))
