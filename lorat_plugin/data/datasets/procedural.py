"""The procedural benchmark ``lorat make-benchmark`` writes (docs/demo.md), in either of its layouts: GOT-10k
(``root/val/`` for the test split, ``root/train/``; 0-based) or LaSOT (``root/testing_set.txt`` /
``training_set.txt``; 1-based in the files). Read with those readers; scored by OPE (pytracking's definition), its
results written 0-based in the got10k layout (``ExperimentGOT10k(root, subset="val")`` scores a test split too).

Each sequence's ``meta_info.ini`` (both layouts) lists its challenges (``challenges: occlusion,fast_motion`` or
``none``); they are read into ``attributes["challenges"]`` (challenge -> bool, every challenge of the benchmark's
sequences named), which the reports break scores down by, as LaSOT's attribute files.
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
        return _with_challenges(got10k.load(root, GOT10K_SUBSETS[split]), folder_depth=1)
    if (root / lasot.SPLIT_LISTS[split]).is_file():
        return _with_challenges(lasot.load(root, split), folder_depth=2)
    raise FileNotFoundError(f"no procedural {split} split under {root}: expected "
                            f"{root / GOT10K_SUBSETS[split] / 'list.txt'} or {root / lasot.SPLIT_LISTS[split]} "
                            "(written by `lorat make-benchmark`)")


def _with_challenges(sequences: list[Sequence], folder_depth: int) -> list[Sequence]:
    """Set ``attributes["challenges"]`` from each sequence's meta_info.ini (``folder_depth``: how far above a frame
    its sequence folder is). Sequences written before the generator recorded challenges are left as they are."""
    named: dict[str, list[str]] = {}
    for sequence in sequences:
        if not sequence.frames:
            continue
        meta = sequence.attributes.get("meta")
        if meta is None:
            path = Path(sequence.frames[0]).parents[folder_depth - 1] / "meta_info.ini"
            meta = got10k.read_meta_info(path) if path.is_file() else {}
        if "challenges" in meta:
            named[sequence.name] = [c.strip() for c in meta["challenges"].split(",") if c.strip() not in ("", "none")]
    every = sorted({challenge for challenges in named.values() for challenge in challenges})
    for sequence in sequences:
        if sequence.name in named:
            sequence.attributes["challenges"] = {c: c in named[sequence.name] for c in every}
    return sequences


register(DatasetInfo("procedural", "Procedural benchmark", load, splits=SPLITS, default_split="test",
                     formats=("got10k", "pytracking")))
