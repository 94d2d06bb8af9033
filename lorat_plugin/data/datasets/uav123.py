"""UAV123 / UAV20L (Mueller et al., ECCV 2016): ``root/anno/UAV123/<seq>.txt``, ``root/data_seq/UAV123/<folder>/``.

The sequences are those ``got10k.datasets.UAV123`` lists (its ``uav123.json`` gives each one's folder and frame
range); its integrity check wants more than three entries in the root, which the official layout does not have: the
two folders are checked instead. NaN rows: target absent. Splits: ``UAV123`` (default) or ``UAV20L``.
"""
from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..sequence import Sequence
from ._got10k_toolkit import build_dataset, import_got10k_datasets, load_sequences
from ..annotations import parse_boxes, require_dir
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
        # the toolkit's list (its class fails with a KeyError on another name): each sequence's folder and frame
        # range (bird1_2: frames 775..1477 of bird1)
        ranges = json.load(f)[version]
    for entry in os.scandir(root / "anno" / version):
        if entry.name.endswith(".txt") and not entry.name.startswith(".") and entry.name[:-4] not in ranges:
            raise FileNotFoundError(f"{entry.path}: {printable(entry.name[:-4])} is not a {version} sequence")
    dataset = build_dataset(toolkit, root, version)
    if len(dataset) == 0:
        raise FileNotFoundError(f"no UAV123 annotations in {root / 'anno' / version}")

    def frame_folder(dataset: Any, index: int) -> Path:
        return root / "data_seq" / "UAV123" / ranges[dataset.seq_names[index]]["folder_name"]

    def frames(folder: Path, name: str, boxes: np.ndarray) -> tuple[list[str], np.ndarray]:
        numbers = range(ranges[name]["start_frame"], ranges[name]["end_frame"] + 1)
        return [os.path.join(folder, f"{number:06d}.jpg") for number in numbers], boxes

    # got10k's reader is np.loadtxt(delimiter=','): a space is not a separator
    return load_sequences(dataset, "uav123", {"version": version}, frame_folder=frame_folder, match_frames=frames,
                          parse=partial(parse_boxes, commas_only=True))


register(DatasetInfo("uav123", "UAV123", load, splits=VERSIONS, default_split="UAV123", ope_kind="uav",
                     formats=("otb", "pytracking"), also_got10k_otb=True, pytracking_prefix="uav_", aliases=("uav",)))
