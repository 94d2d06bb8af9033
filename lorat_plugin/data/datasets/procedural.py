"""The procedural benchmark ``lorat make-benchmark`` writes (docs/demo.md), in either of its layouts: GOT-10k
(``root/val/`` for the test split, ``root/train/``; 0-based) or LaSOT (``root/testing_set.txt`` /
``training_set.txt``; 1-based in the files). Read with those readers; scored by OPE (pytracking's definition), its
results written 0-based in the got10k layout (``ExperimentGOT10k(root, subset="val")`` scores a test split too).
"""
from __future__ import annotations

from pathlib import Path

from ..sequence import Sequence
from ..annotations import require_dir
from . import got10k, lasot
from .registry import DatasetInfo, register

SPLITS = ("test", "train")
GOT10K_SUBSETS = {"test": "val", "train": "train"}  # the GOT-10k layout writes the test split as val


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "procedural benchmark")
    split = (split or "test").lower()
    if split not in SPLITS:
        raise ValueError(f"unknown procedural split {split!r} (expected one of {', '.join(SPLITS)})")
    if (root / GOT10K_SUBSETS[split] / "list.txt").is_file():
        return got10k.load(root, GOT10K_SUBSETS[split])
    if (root / lasot.SPLIT_LISTS[split]).is_file():
        return lasot.load(root, split)
    raise FileNotFoundError(f"no procedural {split} split under {root}: expected "
                            f"{root / GOT10K_SUBSETS[split] / 'list.txt'} or {root / lasot.SPLIT_LISTS[split]} "
                            "(written by `lorat make-benchmark`)")


register(DatasetInfo("procedural", "Procedural benchmark", load, splits=SPLITS, default_split="test",
                     formats=("got10k", "pytracking")))
