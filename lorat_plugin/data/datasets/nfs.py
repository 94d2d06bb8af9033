"""NfS, Need for Speed (Galoogahi et al., ICCV 2017): ``root/<seq>/<fps>/<seq>/*.jpg`` and ``root/<seq>/<fps>/*.txt``.

The sequences are those ``got10k.datasets.NfS`` lists; the 240 fps annotations (``id xmin ymin xmax ymax ...``)
are sampled for 30 fps as its ``__getitem__`` and ``ExperimentNfS`` do: an annotation with about 8 times as many
lines as the 30 fps frames is read every 8th line, one line more or fewer than the frames is cut to the shorter.
Splits: ``30`` (default) or ``240``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sequence import AnnotationError, Sequence
from ._got10k_toolkit import build_dataset, import_got10k_datasets, list_jpgs, load_sequences
from ..annotations import require_dir
from .registry import DatasetInfo, register


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "NfS")
    fps = int(str(split or "30").lower().removesuffix("fps"))
    if fps not in (30, 240):
        raise ValueError(f"unknown NfS split {split!r} (expected 30 or 240)")
    dataset = build_dataset(import_got10k_datasets().NfS, root, fps)
    if len(dataset) == 0:
        raise FileNotFoundError(f"no NfS annotations (<seq>/{fps}/<seq>.txt) under {root}")
    return load_sequences(dataset, "nfs", {"fps": fps}, parse=_parse_nfs_annotation, match_frames=_frames,
                          frame_folder=lambda d, index: Path(d.seq_dirs[index]))


def _parse_nfs_annotation(text: str, path: Path) -> np.ndarray:
    """What the toolkit reads (``np.loadtxt(dtype=str)``, then columns 1..4): whitespace-separated fields, as many
    on every line, the second to fifth numbers (``xmin ymin xmax ymax``); returns x, y, width, height."""
    columns = None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) < 5:
                raise ValueError
            rows.append([float(v) for v in fields[1:5]])
        except ValueError:
            raise AnnotationError(f"{path}, line {number}: expected 'id xmin ymin xmax ymax ...', "
                                  f"got {line.strip()!r}") from None
        if columns is None:
            columns = len(fields)
        elif len(fields) != columns:  # e.g. a label with a space in it: the toolkit's table cannot be read
            raise AnnotationError(f"{path}, line {number}: {len(fields)} fields, the first line has {columns} "
                                  "(the label must be one word)")
    if not rows:
        raise AnnotationError(f"{path}: empty annotation file")
    boxes = np.array(rows, dtype=np.float64)
    boxes[:, 2:] -= boxes[:, :2]
    return boxes


def _frames(folder: Path, name: str, boxes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The toolkit's rule (got10k/datasets/nfs.py, ``NfS.__getitem__``)."""
    frames = list_jpgs(folder)
    if frames and len(frames) != len(boxes):
        if abs(len(boxes) / len(frames) - 8) < 1:  # the 240 fps annotation for the 30 fps frames
            boxes = boxes[::8]
        if abs(len(frames) - len(boxes)) == 1:
            shorter = min(len(frames), len(boxes))
            frames, boxes = frames[:shorter], boxes[:shorter]
    return frames, boxes


register(DatasetInfo("nfs", "NfS (30 fps)", load, splits=("30", "240"), default_split="30",
                     formats=("otb", "pytracking"), also_got10k_otb=True, pytracking_prefix="nfs_", aliases=("nfs30",)))
