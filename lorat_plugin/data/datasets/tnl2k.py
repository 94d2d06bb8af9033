"""TNL2K (Wang et al., CVPR 2021): ``root/<seq>/imgs/*.{jpg,png}``, ``groundtruth.txt``, ``language.txt``; frames in
natural order, boxes as stored (as the reference does), zero-sized boxes not visible. got10k has no TNL2K class.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sequence import AnnotationError, Sequence
from ..annotations import check_frame_count, list_images, read_boxes, read_text, require_dir, sequence_folders
from .registry import DatasetInfo, register


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "TNL2K")
    if split not in (None, "test", "all"):
        raise ValueError(f"TNL2K: pass the root of the split you want (test or train); got split={split!r}")
    sequences = []
    for folder, frames, boxes in annotated_folders(root, "TNL2K", image_dirs=("imgs", "img"), rule="annotated"):
        attributes = {}
        language = folder / "language.txt"
        if language.is_file():
            attributes["language"] = read_text(language).strip()
        sequences.append(Sequence(folder.name, frames, boxes, dataset="tnl2k", attributes=attributes))
    return sequences


def annotated_folders(root: Path, what: str, *, image_dirs: tuple[str, ...], rule: str
                      ) -> list[tuple[Path, list[Path], np.ndarray]]:
    """(folder, frames, boxes) of every ``<seq>/groundtruth.txt`` under ``root``, frames in natural order from the
    first of ``image_dirs`` that exists (``""``: the sequence folder itself), as many as annotated (``rule``:
    :func:`check_frame_count`)."""
    folders = sequence_folders(root, "groundtruth.txt")
    if not folders:
        raise FileNotFoundError(f"no {what} sequences (<seq>/groundtruth.txt) under {root}")
    found = []
    for folder in folders:
        gt_file = folder / "groundtruth.txt"
        boxes = read_boxes(gt_file)
        image_dir = next((folder / d for d in image_dirs if (folder / d).is_dir()), None)
        if image_dir is None:
            raise AnnotationError(f"frame folder not found: {' or '.join(str(folder / d) for d in image_dirs)} "
                                  f"(annotation {gt_file})")
        frames = list_images(image_dir)
        check_frame_count(gt_file, len(boxes), len(frames), image_dir, rule=rule)
        found.append((folder, frames[:len(boxes)], boxes))
    return found


register(DatasetInfo("tnl2k", "TNL2K", load, splits=("test",), default_split="test", formats=("lasot", "pytracking")))
