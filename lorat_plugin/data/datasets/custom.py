"""A user's own sequences: ``root/<seq>/groundtruth.txt`` (0-based ``x,y,w,h``, one line per frame, comma, tab or
space separated; a row of zeros or NaN where the target is absent) and the frames in ``<seq>/img/``, ``<seq>/imgs/``
or ``<seq>/`` itself (any image type, natural order; as many frames as lines). Scored by OPE (pytracking's
definition), results written 0-based.
"""
from __future__ import annotations

from pathlib import Path

from ..sequence import Sequence
from ..annotations import check_frame_count, list_images, read_boxes, require_dir, sequence_folders
from .registry import DatasetInfo, register


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "custom dataset")
    if split not in (None, "all"):
        raise ValueError(f"a custom dataset has no splits: pass the folder you want as the root (got split={split!r})")
    folders = sequence_folders(root, "groundtruth.txt")
    if not folders:
        raise FileNotFoundError(f"no sequences (<seq>/groundtruth.txt) under {root}")
    sequences = []
    for folder in folders:
        gt_file = folder / "groundtruth.txt"
        boxes = read_boxes(gt_file)
        image_dir = next((d for d in (folder / "img", folder / "imgs") if d.is_dir()), folder)
        frames = list_images(image_dir)
        check_frame_count(gt_file, len(boxes), len(frames), image_dir, rule="equal")
        sequences.append(Sequence(folder.name, frames, boxes, dataset="custom"))
    return sequences


register(DatasetInfo("custom", "Custom sequences", load, splits=("all",), default_split="all"))
