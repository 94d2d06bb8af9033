"""Readers for the standard benchmark layouts, shared by evaluation and training.

``load_dataset(name, root, split=None) -> list[Sequence]`` parses annotation files and lists frames without decoding
any image. Boxes come out 0-based ``x, y, w, h``; ``Sequence.visible`` is False where the target is absent, occluded,
out of view or unannotated. A malformed file raises ``AnnotationError`` naming the file (and line); a missing root
or folder ``FileNotFoundError``. Layouts, splits and ``attributes``: docs/evaluation.md.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..sequence import Sequence
from . import coco, got10k, lasot, nfs, otb, tnl2k, trackingnet, uav123

Loader = Callable[[Path, "str | None"], "list[Sequence]"]

DATASETS: dict[str, Loader] = {
    "got10k": got10k.load,
    "lasot": lasot.load,
    "lasot_ext": lasot.load_ext,
    "trackingnet": trackingnet.load,
    "otb": otb.load,
    "uav123": uav123.load,
    "nfs": nfs.load,
    "tnl2k": tnl2k.load,
    "coco": coco.load,  # training only: one-frame sequences, one per object
}

ALIASES = {"got-10k": "got10k", "lasot_extension": "lasot_ext", "lasotext": "lasot_ext", "otb100": "otb",
           "otb2015": "otb", "uav": "uav123", "nfs30": "nfs", "tracking_net": "trackingnet"}


def dataset_key(name: str) -> str:
    """The registry key for a user-typed dataset name ('LaSOT-ext' -> 'lasot_ext')."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, ALIASES.get(name.strip().lower(), key))
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return key


def load_dataset(name: str, root: str | Path, split: str | None = None) -> list[Sequence]:
    return DATASETS[dataset_key(name)](Path(root).expanduser(), split)


__all__ = ["DATASETS", "load_dataset", "dataset_key"]
