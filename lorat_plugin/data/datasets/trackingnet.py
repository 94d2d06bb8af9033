"""TrackingNet (Müller et al., ECCV 2018): ``root/{TRAIN_0..TRAIN_11,TEST}/{anno/<seq>.txt, frames/<seq>/<i>.jpg}``,
frames from 0, 0-based boxes; TEST annotates frame 0 only. Splits: ``test``, ``train`` (every chunk), ``TRAIN_<k>``
or a comma-separated list.

Why not ``got10k.datasets.TrackingNet``: in 0.1.3 it misses the ``frames/`` level and sorts frames with
``int(full_path[:-4])`` (got10k/datasets/trackingnet.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..sequence import AnnotationError, Sequence
from ..annotations import list_images, natural_key, numbered_frames, read_boxes, require_dir
from .names import check_sequence_name
from .registry import DatasetInfo, register


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "TrackingNet")
    sequences = []
    for chunk in _chunks(root, split or "test"):
        anno_dir, frames_dir = root / chunk / "anno", root / chunk / "frames"
        if not anno_dir.is_dir():
            raise FileNotFoundError(f"TrackingNet annotation folder not found: {anno_dir}")
        names = sorted((e.name[:-4] for e in os.scandir(anno_dir) if e.name.endswith(".txt")), key=natural_key)
        for name in names:
            check_sequence_name(name, anno_dir / f"{name}.txt")  # before it becomes part of the frames' path
            sequences.append(_load_sequence(anno_dir / f"{name}.txt", frames_dir / name, chunk))
    return sequences


def _chunks(root: Path, split: str) -> list[str]:
    chunks = []
    for item in (s.strip() for s in split.split(",") if s.strip()):
        upper = item.upper()
        if upper == "TEST":
            chunks.append("TEST")
        elif upper == "TRAIN":
            found = sorted((d.name for d in root.iterdir() if d.is_dir() and d.name.upper().startswith("TRAIN_")),
                           key=natural_key)
            if not found:
                raise FileNotFoundError(f"no TRAIN_<k> chunks under {root}")
            chunks += found
        elif upper.startswith("TRAIN_") and upper[6:].isdigit():
            chunks.append(upper)
        else:
            raise ValueError(f"unknown TrackingNet split {item!r} (expected test, train, TRAIN_<k> or a list)")
    for chunk in chunks:
        if not (root / chunk).is_dir():
            raise FileNotFoundError(f"TrackingNet chunk folder not found: {root / chunk}")
    return chunks


def _load_sequence(anno: Path, frame_dir: Path, chunk: str) -> Sequence:
    gt = read_boxes(anno)
    if chunk == "TEST" and len(gt) == 1:
        frames = list_images(frame_dir)
        if not frames:
            raise AnnotationError(f"{anno}: no frames in {frame_dir}")
        if [f.stem for f in frames] != [str(i) for i in range(len(frames))]:
            raise AnnotationError(f"{frame_dir}: frames must be numbered 0..{len(frames) - 1} without gaps")
        boxes = np.full((len(frames), 4), np.nan)
        boxes[0] = gt[0]
    else:
        frames = numbered_frames(frame_dir, len(gt), "%d.jpg", start=0, annotation=anno, rule="equal")
        boxes = gt
    return Sequence(anno.stem, frames, boxes, dataset="trackingnet", attributes={"chunk": chunk})


register(DatasetInfo("trackingnet", "TrackingNet", load, splits=("test", "train", "TRAIN_<k>"), default_split="test",
                     protocol="trackingnet", formats=("trackingnet", "pytracking"), aliases=("tracking_net",)))
