"""OTB-2013/OTB-100 (Wu et al., TPAMI 2015): ``root/<Seq>/img/*.jpg``, ``groundtruth_rect*.txt`` (1-based, converted).

The sequences are those ``got10k.datasets.OTB`` (``download=False``) lists: its official lists and two-target names
(``Jogging.1``) are those of ``ExperimentOTB``, and so are its special frame ranges, kept below. Splits: ``otb100``
(default), ``otb2013``, ``tb50``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..sequence import AnnotationError, Sequence
from ._got10k_toolkit import build_dataset, import_got10k_datasets, list_jpgs, load_sequences
from ..annotations import read_text, require_dir
from .registry import DatasetInfo, register

VERSIONS = {"otb100": 2015, "otb2015": 2015, "tb100": 2015, "2015": 2015, "otb": 2015,
            "otb2013": 2013, "2013": 2013, "tb50": "tb50", "otb50": "tb50"}
# the frames a sequence's annotation covers where the folder holds more: got10k/datasets/otb.py, OTB.__getitem__
# (David is frames 300..770; http://cvlab.hanyang.ac.kr/tracker_benchmark/index.html)
ANNOTATED_FRAMES = {"david": slice(299, 770), "football1": slice(74), "freeman3": slice(460),
                    "freeman4": slice(283), "diving": slice(215)}


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "OTB")
    key = (split or "otb100").lower()
    if key not in VERSIONS:
        raise ValueError(f"unknown OTB split {split!r} (expected one of {', '.join(VERSIONS)})")
    dataset = build_dataset(_keeping_what_it_reads(import_got10k_datasets().OTB), root, VERSIONS[key],
                            download=False)
    _refuse_emptied_sequences(dataset.left_out, dataset.anno_files)
    if len(dataset) == 0:
        raise FileNotFoundError(f"no OTB sequences (<Seq>/groundtruth_rect.txt with an official name) under {root}")
    logging.getLogger(__name__).debug("OTB %s: %d sequences found under %s", key, len(dataset), root)
    return load_sequences(dataset, "otb", {"version": key}, one_based=True, texts=dataset.texts,
                          frame_folder=lambda d, index: Path(d.seq_dirs[index]) / "img", match_frames=_frames)


def _keeping_what_it_reads(toolkit: type) -> type:
    class OTB(toolkit):
        """The toolkit's class, whose constructor reads every annotation file to leave out the empty ones
        (``_filter_files``): the texts are kept for the reader, which reads each file once, and the files left out
        are named."""

        def _filter_files(self, filenames: list[str]) -> list[str]:
            self.texts = {name: read_text(Path(name), encoding="utf-8") for name in filenames}
            self.left_out = [name for name in filenames if not self.texts[name].strip()]
            return [name for name in filenames if self.texts[name].strip()]

    return OTB


def _refuse_emptied_sequences(left_out: list[str], kept: list[str]) -> None:
    """The toolkit leaves out empty annotation files without a word (Human4's ``groundtruth_rect.1.txt`` is empty
    in the official release, its target is in ``groundtruth_rect.2.txt``). An official sequence whose every
    annotation file is empty would vanish from the results, so it is an error naming the file."""
    kept_folders = {Path(name).parent for name in kept}
    for name in left_out:
        if Path(name).parent not in kept_folders:
            raise AnnotationError(f"{name}: empty annotation file (the sequence {Path(name).parent.name} would be "
                                  "left out)")


def _frames(folder: Path, name: str, boxes: np.ndarray) -> tuple[list[str], np.ndarray]:
    return list_jpgs(folder)[ANNOTATED_FRAMES.get(name.lower(), slice(None))], boxes


register(DatasetInfo("otb", "OTB100", load, splits=("otb100", "otb2013", "tb50"), default_split="otb100",
                     one_based=True, formats=("otb", "pytracking"), also_got10k_otb=True,
                     aliases=("otb100", "otb2015")))
