"""LaSOT (Fan et al., CVPR 2019) and LaSOT_ext (IJCV 2021): ``root/<class>/<class>-<k>/`` holding ``img/%08d.jpg``,
``groundtruth.txt`` (1-based MATLAB pixels, converted to 0-based), ``full_occlusion.txt`` and ``out_of_view.txt``
(a frame with either flag is not visible), ``nlp.txt``; the 14 challenge attributes come from the evaluation
toolkit's ``annos/att/<seq>.txt`` when ``root/att/`` or ``root/annos/att/`` exists. Splits: docs/evaluation.md.

Why not ``got10k.datasets.LaSOT``: it crashes in 0.1.3 (``_check_integrity`` arguments; got10k/datasets/lasot.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..sequence import AnnotationError, Sequence
from ..annotations import natural_key, numbered_frames, read_boxes, read_flags, read_text, require_dir, sequence_folders
from .names import read_sequence_list
from .registry import DatasetInfo, register

# the columns of the LaSOT toolkit's annos/att/<seq>.txt, in order (Illumination Variation ... Aspect Ratio Change)
ATTRIBUTE_NAMES = ("IV", "POC", "DEF", "MB", "CM", "ROT", "BC", "VC", "SV", "FOC", "FM", "OV", "LR", "ARC")
SPLIT_LISTS = {"test": "testing_set.txt", "train": "training_set.txt"}  # the official split lists, one name a line


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    return _load(root, split, dataset="lasot")


def load_ext(root: str | Path, split: str | None = None) -> list[Sequence]:
    if split not in (None, "test", "all"):
        raise ValueError(f"LaSOT_ext has only a test split, got {split!r}")
    return _load(root, "all", dataset="lasot_ext")


def _load(root: str | Path, split: str | None, *, dataset: str) -> list[Sequence]:
    root = require_dir(root, "LaSOT" if dataset == "lasot" else "LaSOT_ext")
    found = _discover(root)
    if not found:
        raise FileNotFoundError(f"no LaSOT sequences (<class>/<class>-<k>/groundtruth.txt) under {root}")
    names = _split_names(root, split) if dataset == "lasot" else None
    if names is not None and split is None and not (root / SPLIT_LISTS["test"]).is_file() \
            and not all(n in found for n in names):
        names = None  # not the full official set and no list of its own: a subset or a custom LaSOT-layout set
    if names is not None:
        missing = [n for n in names if n not in found]
        if len(missing) == len(names):
            raise FileNotFoundError(f"none of the {len(names)} LaSOT {split} sequences is under {root}")
        if missing:
            raise FileNotFoundError(f"{len(missing)} LaSOT {split} sequences missing under {root}, e.g. {missing[0]}")
        folders = [found[n] for n in names]
    else:
        folders = [found[n] for n in sorted(found, key=natural_key)]
    attribute_dir = next((d for d in (root / "att", root / "annos" / "att") if d.is_dir()), None)
    return [_load_sequence(folder, dataset, attribute_dir) for folder in folders]


def _discover(root: Path) -> dict[str, Path]:
    """Sequence name -> folder, for the class-folder layout and for a flat folder of sequences."""
    found = {}
    for candidate in sorted(p for p in root.iterdir() if p.is_dir()):
        flat = (candidate / "groundtruth.txt").is_file()
        found.update((f.name, f) for f in ([candidate] if flat else sequence_folders(candidate, "groundtruth.txt")))
    return found


def _split_names(root: Path, split: str | None) -> list[str] | None:
    if split == "all":
        return None
    wanted = split or "test"
    if wanted not in ("train", "test"):
        raise ValueError(f"unknown LaSOT split {split!r} (expected train, test or all)")
    list_file = root / SPLIT_LISTS[wanted]
    if list_file.is_file():
        return read_sequence_list(list_file)
    try:  # the split the got10k package bundles
        import got10k.datasets

        return list(json.loads(Path(got10k.datasets.__file__).with_name("lasot.json").read_text())[wanted])
    except (ImportError, FileNotFoundError):
        pass
    if split is None:
        return None  # no list anywhere: evaluate what is there
    raise FileNotFoundError(f"{list_file} not found and the got10k package (which bundles the LaSOT split) "
                            "is not installed; pass split='all' to load every sequence under the root")


def _load_sequence(folder: Path, dataset: str, attribute_dir: Path | None) -> Sequence:
    gt_file = folder / "groundtruth.txt"
    boxes = read_boxes(gt_file)
    boxes[:, :2] -= 1.0  # 1-based MATLAB pixels -> 0-based
    n = len(boxes)
    # frames beyond the annotation (monkey-17) are not evaluated by the LaSOT toolkit
    frames = numbered_frames(folder / "img", n, "%08d.jpg", start=1, annotation=gt_file, rule="annotated")
    attributes: dict = {"class": folder.name.rsplit("-", 1)[0]}
    visible = np.ones(n, dtype=bool)
    for flag in ("full_occlusion", "out_of_view"):
        path = folder / f"{flag}.txt"
        if path.is_file():
            attributes[flag] = read_flags(path, n, name=f"{flag} flags").astype(bool)
            visible &= ~attributes[flag]
    nlp = folder / "nlp.txt"
    if nlp.is_file():
        attributes["nlp"] = read_text(nlp).strip()
    if attribute_dir is not None and (attribute_dir / f"{folder.name}.txt").is_file():
        flags = read_flags(attribute_dir / f"{folder.name}.txt", len(ATTRIBUTE_NAMES), name="challenge attributes")
        attributes["challenges"] = {short: bool(v) for short, v in zip(ATTRIBUTE_NAMES, flags)}
    if not np.all(np.isfinite(boxes[visible])):
        bad = int(np.flatnonzero(visible & ~np.all(np.isfinite(boxes), axis=1))[0])
        raise AnnotationError(f"{gt_file}, line {bad + 1}: a visible frame needs a finite box")
    visible &= np.all(boxes[:, 2:] > 0, axis=1)  # a zero-size box cannot be tracked or trained on
    return Sequence(folder.name, frames, boxes, visible, dataset=dataset, attributes=attributes)


register(DatasetInfo("lasot", "LaSOT", load, splits=("test", "train", "all"), default_split="test", one_based=True,
                     ope_kind="lasot", formats=("lasot", "pytracking"), also_lasot_toolkit=True))
register(DatasetInfo("lasot_ext", "LaSOT_ext", load_ext, splits=("test",), default_split="test", one_based=True,
                     ope_kind="lasot", formats=("lasot", "pytracking"), also_lasot_toolkit=True,
                     aliases=("lasot_extension", "lasotext")))
