"""NfS, Need for Speed (Galoogahi et al., ICCV 2017): ``root/<seq>/<fps>/<seq>/*.jpg`` and ``root/<seq>/<fps>/*.txt``.

Read through ``got10k.datasets.NfS``, which samples the 240 fps annotations (``id xmin ymin xmax ymax ...``) for
30 fps as ``ExperimentNfS`` does. Splits: ``30`` (default) or ``240``.
"""
from __future__ import annotations

from pathlib import Path

from ..sequence import AnnotationError, Sequence
from ._got10k_toolkit import import_got10k_datasets, load_sequences, quietly
from ..annotations import read_text, require_dir
from .registry import DatasetInfo, register


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "NfS")
    fps = int(str(split or "30").lower().removesuffix("fps"))
    if fps not in (30, 240):
        raise ValueError(f"unknown NfS split {split!r} (expected 30 or 240)")
    dataset = quietly(import_got10k_datasets().NfS, str(root), fps)
    if len(dataset) == 0:
        raise FileNotFoundError(f"no NfS annotations (<seq>/{fps}/<seq>.txt) under {root}")
    return load_sequences(dataset, "nfs", {"fps": fps}, check=_check_nfs_annotation)


def _check_nfs_annotation(path: Path) -> None:
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            [float(v) for v in fields[1:5]]
            if len(fields) < 5:
                raise ValueError
        except ValueError:
            raise AnnotationError(f"{path}, line {number}: expected 'id xmin ymin xmax ymax ...', "
                                  f"got {line.strip()!r}") from None


register(DatasetInfo("nfs", "NfS (30 fps)", load, splits=("30", "240"), default_split="30",
                     formats=("otb", "pytracking"), also_got10k_otb=True, pytracking_prefix="nfs_", aliases=("nfs30",)))
