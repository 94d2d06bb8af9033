"""A user's own sequences: ``root/<seq>/groundtruth.txt`` (0-based ``x,y,w,h``, one line per frame, comma, tab or
space separated; a row of zeros or NaN where the target is absent) and the frames in ``<seq>/img/``, ``<seq>/imgs/``
or ``<seq>/`` itself (any image type, natural order; as many frames as lines). Scored by OPE (pytracking's
definition), results written 0-based.
"""
from __future__ import annotations

from pathlib import Path

from ..sequence import Sequence
from ..annotations import require_dir
from .registry import DatasetInfo, register
from .tnl2k import annotated_folders  # the same folder layout, without the language file


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "custom dataset")
    if split not in (None, "all"):
        raise ValueError(f"a custom dataset has no splits: pass the folder you want as the root (got split={split!r})")
    return [Sequence(folder.name, frames, boxes, dataset="custom") for folder, frames, boxes in
            annotated_folders(root, "custom", image_dirs=("img", "imgs", ""), rule="equal")]


register(DatasetInfo("custom", "Custom sequences", load, splits=("all",), default_split="all"))
