"""TNL2K (Wang et al., CVPR 2021): ``root/<seq>/imgs/*.{jpg,png}``, ``groundtruth.txt``, ``language.txt``; frames in
natural order, boxes as stored (as the reference does), zero-sized boxes not visible. got10k has no TNL2K class.
"""
from __future__ import annotations

from pathlib import Path

from ..sequence import Sequence
from ..annotations import check_frame_count, list_images, read_boxes, read_text, require_dir, sequence_folders
from .registry import DatasetInfo, register


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "TNL2K")
    if split not in (None, "test", "all"):
        raise ValueError(f"TNL2K: pass the root of the split you want (test or train); got split={split!r}")
    folders = sequence_folders(root, "groundtruth.txt")
    if not folders:
        raise FileNotFoundError(f"no TNL2K sequences (<seq>/groundtruth.txt) under {root}")
    sequences = []
    for folder in folders:
        gt_file = folder / "groundtruth.txt"
        boxes = read_boxes(gt_file)
        image_dir = folder / "imgs" if (folder / "imgs").is_dir() else folder / "img"
        frames = list_images(image_dir)
        check_frame_count(gt_file, len(boxes), len(frames), image_dir, rule="annotated")
        attributes = {}
        language = folder / "language.txt"
        if language.is_file():
            attributes["language"] = read_text(language).strip()
        sequences.append(Sequence(folder.name, frames[:len(boxes)], boxes, dataset="tnl2k", attributes=attributes))
    return sequences


register(DatasetInfo("tnl2k", "TNL2K", load, splits=("test",), default_split="test", formats=("lasot", "pytracking")))
