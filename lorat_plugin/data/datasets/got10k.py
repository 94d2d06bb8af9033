"""GOT-10k (Huang et al., TPAMI 2021): ``root/{train,val,test}/list.txt`` and ``GOT-10k_*_%06d/`` folders holding
``%08d.jpg``, ``groundtruth.txt`` (0-based; the test split has only the first line) and, for train/val, the
``*.label`` files and ``meta_info.ini``.

Why not ``got10k.datasets.GOT10k``: it globs every folder (slow on the training split), returns absence/cover only
with ``meta_info.ini`` and fails on bad files with bare asserts. Same frames and boxes (tests/test_datasets.py).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..sequence import AnnotationError, Sequence
from ..annotations import (list_images, numbered_frames, read_boxes, read_flags, read_text, require_dir,
                           sequence_folders)
from .names import read_sequence_list
from .registry import DatasetInfo, register

SPLITS = ("train", "val", "test")
_RESOLUTION = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "GOT-10k")
    split_dir = _split_dir(root, split)
    list_file = split_dir / "list.txt"
    if list_file.is_file():
        folders = [split_dir / name for name in read_sequence_list(list_file)]
        for number, folder in enumerate(folders, start=1):
            if not folder.is_dir():
                raise AnnotationError(f"{list_file}, line {number}: sequence folder {folder} not found")
    else:  # a hand-made subset without list.txt: every folder with a groundtruth.txt
        folders = sequence_folders(split_dir, "groundtruth.txt")
        if not folders:
            raise FileNotFoundError(f"no GOT-10k sequences in {split_dir} (no list.txt, no */groundtruth.txt)")
    test_split = split_dir.name == "test" or (split or "").lower() == "test"
    return [_load_sequence(folder, test_split) for folder in folders]


def _split_dir(root: Path, split: str | None) -> Path:
    if split is None:
        if (root / "list.txt").is_file():
            return root  # root is already one split's folder
        present = [s for s in SPLITS if (root / s).is_dir()]
        raise ValueError(f"GOT-10k root {root} holds the splits {present}: choose one with split= / --split")
    split = split.lower()
    if split not in SPLITS:
        raise ValueError(f"unknown GOT-10k split {split!r} (expected one of {', '.join(SPLITS)})")
    if (root / split).is_dir():
        return root / split
    if root.name.lower() == split and ((root / "list.txt").is_file() or any(root.iterdir())):
        return root
    raise FileNotFoundError(f"GOT-10k split folder not found: {root / split}")


def _load_sequence(folder: Path, test_split: bool) -> Sequence:
    gt_file = folder / "groundtruth.txt"
    gt = read_boxes(gt_file)
    if test_split and len(gt) == 1:
        frames = list_images(folder)
        if not frames:
            raise AnnotationError(f"{gt_file}: no frames in {folder}")
        boxes = np.full((len(frames), 4), np.nan)
        boxes[0] = gt[0]
        return Sequence(folder.name, frames, boxes, dataset="got10k", attributes={"split": "test"})
    n = len(gt)
    frames = numbered_frames(folder, n, "%08d.jpg", start=1, annotation=gt_file, rule="equal")
    attributes: dict = {"split": "test" if test_split else folder.parent.name}
    visible = np.all(np.isfinite(gt), axis=1) & np.all(gt[:, 2:] > 0, axis=1)
    for label in ("absence", "cover", "cut_by_image"):
        path = folder / f"{label}.label"
        if path.is_file():
            attributes[label] = read_flags(path, n, name=f"{label} labels")
    if "absence" in attributes:
        visible &= attributes["absence"] == 0
    meta_file = folder / "meta_info.ini"
    if meta_file.is_file():
        meta = read_meta_info(meta_file)
        attributes["meta"] = meta
        if "object_class" in meta:
            attributes["class"] = meta["object_class"]
        if "resolution" in meta:
            match = _RESOLUTION.fullmatch(meta["resolution"].strip())
            if match is None:
                raise AnnotationError(f"{meta_file}: resolution must look like (W, H), got {meta['resolution']!r}")
            attributes["resolution"] = (int(match.group(1)), int(match.group(2)))
    return Sequence(folder.name, frames, gt, visible, dataset="got10k", attributes=attributes)


def read_meta_info(path: Path) -> dict[str, str]:
    """``meta_info.ini``: a section header line, then ``key: value`` lines (values may contain ':')."""
    meta = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(("[", "#", ";")):
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise AnnotationError(f"{path}, line {number}: expected 'key: value', got {line!r}")
        meta[key.strip()] = value.strip()
    return meta


register(DatasetInfo("got10k", "GOT-10k", load, splits=SPLITS, default_split=None, protocol="got10k",
                     formats=("got10k",), aliases=("got-10k",)))
