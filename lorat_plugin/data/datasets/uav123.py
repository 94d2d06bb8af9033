"""UAV123 / UAV20L (Mueller et al., ECCV 2016): ``root/anno/UAV123/<seq>.txt``, ``root/data_seq/UAV123/<folder>/``.

Read through ``got10k.datasets.UAV123`` (its ``uav123.json`` gives each sequence's folder and frame range); its
integrity check wants more than three entries in the root, which the official layout does not have, so it is
replaced by a check of the two folders. NaN rows: target absent. Splits: ``UAV123`` (default) or ``UAV20L``.
"""
from __future__ import annotations

from pathlib import Path

from ..sequence import Sequence
from ._got10k_toolkit import import_got10k_datasets, load_sequences, quietly
from ..annotations import require_dir
from .registry import DatasetInfo, register

VERSIONS = ("UAV123", "UAV20L")


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "UAV123")
    version = (split or "UAV123").upper()
    if version not in VERSIONS:
        raise ValueError(f"unknown UAV123 split {split!r} (expected UAV123 or UAV20L)")
    for folder in (root / "anno" / version, root / "data_seq" / "UAV123"):
        if not folder.is_dir():
            raise FileNotFoundError(f"UAV123 folder not found: {folder}")

    class _UAV123(import_got10k_datasets().UAV123):
        def _check_integrity(self, root_dir, version):  # see the module docstring
            pass

    dataset = quietly(_UAV123, str(root), version)
    if len(dataset) == 0:
        raise FileNotFoundError(f"no UAV123 annotations in {root / 'anno' / version}")
    for name, anno_file in zip(dataset.seq_names, dataset.anno_files):
        if name not in dataset.seq_metas[version]:
            raise FileNotFoundError(f"{anno_file}: {name} is not a {version} sequence")
    return load_sequences(dataset, "uav123", {"version": version})


register(DatasetInfo("uav123", "UAV123", load, splits=VERSIONS, default_split="UAV123", ope_kind="uav",
                     formats=("otb", "pytracking"), also_got10k_otb=True, pytracking_prefix="uav_", aliases=("uav",)))
