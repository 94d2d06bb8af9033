"""NfS, Need for Speed (Galoogahi et al., ICCV 2017): ``root/<seq>/<fps>/<seq>/*.jpg`` and ``root/<seq>/<fps>/*.txt``.

Read through ``got10k.datasets.NfS``, which samples the 240 fps annotations (``id xmin ymin xmax ymax ...``) for
30 fps as ``ExperimentNfS`` does: an annotation with about 8 times as many lines as the 30 fps frames is read every
8th line, one line more or fewer than the frames is cut to the shorter. Splits: ``30`` (default) or ``240``.
"""
from __future__ import annotations

from pathlib import Path

from ..sequence import AnnotationError, Sequence
from ._got10k_toolkit import build_dataset, import_got10k_datasets, load_sequences
from ..annotations import read_text, require_dir
from .registry import DatasetInfo, register


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "NfS")
    fps = int(str(split or "30").lower().removesuffix("fps"))
    if fps not in (30, 240):
        raise ValueError(f"unknown NfS split {split!r} (expected 30 or 240)")
    dataset = build_dataset(import_got10k_datasets().NfS, root, fps)
    if len(dataset) == 0:
        raise FileNotFoundError(f"no NfS annotations (<seq>/{fps}/<seq>.txt) under {root}")
    return load_sequences(dataset, "nfs", {"fps": fps}, check=_check_nfs_annotation, globbed_frames=True,
                          frame_folder=lambda d, index: Path(d.seq_dirs[index]))


def _check_nfs_annotation(path: Path) -> int:
    """What the toolkit reads (``np.loadtxt(dtype=str)``, then columns 1..4): whitespace-separated fields, as many
    on every line, the second to fifth numbers; returns the number of lines."""
    columns = None
    count = 0
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        count += 1
        try:
            [float(v) for v in fields[1:5]]
            if len(fields) < 5:
                raise ValueError
        except ValueError:
            raise AnnotationError(f"{path}, line {number}: expected 'id xmin ymin xmax ymax ...', "
                                  f"got {line.strip()!r}") from None
        if columns is None:
            columns = len(fields)
        elif len(fields) != columns:  # e.g. a label with a space in it: the toolkit's table cannot be read
            raise AnnotationError(f"{path}, line {number}: {len(fields)} fields, the first line has {columns} "
                                  "(the label must be one word)")
    if count == 0:
        raise AnnotationError(f"{path}: empty annotation file")
    return count


register(DatasetInfo("nfs", "NfS (30 fps)", load, splits=("30", "240"), default_split="30",
                     formats=("otb", "pytracking"), also_got10k_otb=True, pytracking_prefix="nfs_", aliases=("nfs30",)))
