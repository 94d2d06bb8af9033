"""UAV123 / UAV20L (Mueller et al., ECCV 2016): ``root/anno/UAV123/<seq>.txt``, ``root/data_seq/UAV123/<folder>/``.

Read through ``got10k.datasets.UAV123`` (its ``uav123.json`` gives each sequence's folder and frame range); its
integrity check wants more than three entries in the root, which the official layout does not have: the two
folders are checked instead. NaN rows: target absent. Splits: ``UAV123`` (default) or ``UAV20L``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..sequence import AnnotationError, Sequence
from ._got10k_toolkit import build_dataset, import_got10k_datasets, load_sequences
from ..annotations import read_text, require_dir
from .names import printable
from .registry import DatasetInfo, register

VERSIONS = ("UAV123", "UAV20L")


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "UAV123")
    version = (split or "UAV123").upper()
    if version not in VERSIONS:
        raise ValueError(f"unknown UAV123 split {split!r} (expected UAV123 or UAV20L)")
    for folder in (root / "anno" / version, root / "data_seq" / "UAV123"):
        if not folder.is_dir():
            raise FileNotFoundError(f"UAV123 folder not found: {folder}")

    toolkit = import_got10k_datasets().UAV123
    with open(Path(sys.modules[toolkit.__module__].__file__).with_name("uav123.json")) as f:
        known = json.load(f)[version]  # the toolkit's list (its class fails with a KeyError on another name)
    for entry in os.scandir(root / "anno" / version):
        if entry.name.endswith(".txt") and not entry.name.startswith(".") and entry.name[:-4] not in known:
            raise FileNotFoundError(f"{entry.path}: {printable(entry.name[:-4])} is not a {version} sequence")
    dataset = build_dataset(toolkit, root, version)
    if len(dataset) == 0:
        raise FileNotFoundError(f"no UAV123 annotations in {root / 'anno' / version}")
    # the class joins its (escaped) root into each sequence's folder: joined again with the real root. A sequence is
    # a frame range of its folder (bird1_2: frames 775..1477 of bird1), as uav123.json in the toolkit gives it.
    dataset.seq_dirs = [str(root / "data_seq" / "UAV123" / dataset.seq_metas[version][name]["folder_name"])
                        for name in dataset.seq_names]
    return load_sequences(dataset, "uav123", {"version": version}, check=_check_uav_annotation,
                          frame_folder=lambda d, index: Path(d.seq_dirs[index]))


def _check_uav_annotation(path: Path) -> int:
    """What the toolkit reads (``np.loadtxt(delimiter=',')``): four comma-separated numbers a line, ``NaN`` for an
    absent target; returns the number of lines."""
    lines = read_text(path).rstrip().splitlines()
    if not lines:
        raise AnnotationError(f"{path}: empty annotation file")
    for number, line in enumerate(lines, start=1):
        fields = line.split(",")
        try:
            if len(fields) != 4:
                raise ValueError
            [float(field) for field in fields]
        except ValueError:
            raise AnnotationError(f"{path}, line {number}: expected 4 comma-separated numbers (NaN for an absent "
                                  f"target), got {line.strip()!r}") from None
    return len(lines)


register(DatasetInfo("uav123", "UAV123", load, splits=VERSIONS, default_split="UAV123", ope_kind="uav",
                     formats=("otb", "pytracking"), also_got10k_otb=True, pytracking_prefix="uav_", aliases=("uav",)))
