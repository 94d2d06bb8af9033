"""Readers for the standard benchmark layouts, shared by evaluation and training.

``load_dataset(name, root, split=None) -> list[Sequence]`` parses annotation files and lists frames without decoding
any image. Boxes come out 0-based ``x, y, w, h``; ``Sequence.visible`` is False where the target is absent, occluded,
out of view or unannotated. A malformed file raises ``AnnotationError`` naming the file (and line); a missing root
or folder ``FileNotFoundError``. Each reader module registers its dataset's conventions in :data:`DATASETS`
(``registry.py``); layouts, splits and ``attributes``: docs/evaluation.md.
"""
from __future__ import annotations

from .registry import DATASETS, DatasetInfo, dataset_help, dataset_info, dataset_key, load_dataset, split_help

# each import registers its readers, in the order the help lists them
from . import got10k, lasot, trackingnet, otb, uav123, nfs, tnl2k, procedural, custom, coco  # noqa: E402,F401,I001

__all__ = ["DATASETS", "DatasetInfo", "load_dataset", "dataset_key", "dataset_info", "dataset_help", "split_help"]
