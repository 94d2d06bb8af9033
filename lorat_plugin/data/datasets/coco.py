"""COCO (2017 or 2014) as tracking training data: every non-crowd object of an image is a one-frame sequence.

Layout: ``root/annotations/instances_<split><year>.json``, images in ``root/<split><year>/`` or
``root/images/<split><year>/``; split ``train`` (default) or ``val``, optionally with the year (default 2017).
Boxes (COCO's 0-based ``x, y, w, h``) are fitted into the image; empty ones and crowd regions are dropped, as the
reference's COCO training data does (github.com/LitingLin/LoRAT). Objects of one image share the frame.
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from ..sequence import AnnotationError, Sequence
from ..annotations import require_dir
from .registry import DatasetInfo, register


def load(root: str | Path, split: str | None = None) -> list[Sequence]:
    root = require_dir(root, "COCO")
    match = re.fullmatch(r"(train|val)(\d{4})?", (split or "train").lower())
    if match is None:
        raise ValueError(f"unknown COCO split {split!r} (expected train or val, optionally with the year, "
                         "e.g. train2017)")
    name = f"{match.group(1)}{match.group(2) or '2017'}"
    annotation_file = root / "annotations" / f"instances_{name}.json"
    if not annotation_file.is_file():
        raise FileNotFoundError(f"COCO annotations not found: {annotation_file}")
    image_dir = next((d for d in (root / name, root / "images" / name) if d.is_dir()), None)
    if image_dir is None:
        raise FileNotFoundError(f"COCO images not found: neither {root / name} nor {root / 'images' / name}")

    try:
        from pycocotools.coco import COCO
    except ImportError as e:
        raise ImportError("reading COCO needs pycocotools: pip install 'lorat-plugin[train]'") from e

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco = COCO(str(annotation_file))
    except (ValueError, KeyError, TypeError) as e:
        raise AnnotationError(f"{annotation_file}: not a COCO instances file ({type(e).__name__}: {e})") from e
    categories = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    sequences = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        width, height = float(info["width"]), float(info["height"])
        frame = image_dir / info["file_name"]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError) as e:
                raise AnnotationError(f"{annotation_file}: annotation {ann.get('id')} has no valid bbox") from e
            x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
            x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                continue
            sequences.append(Sequence(
                f"{image_id:012d}_{ann['id']}", [frame], np.array([[x1, y1, x2 - x1, y2 - y1]]),
                np.ones(1, dtype=bool), dataset="coco",
                attributes={"image_id": image_id, "object_id": ann["id"],
                            "class": categories.get(ann["category_id"], str(ann["category_id"]))}))
    return sequences


register(DatasetInfo("coco", "COCO", load, splits=("train", "val", "train<year>", "val<year>"), default_split="train",
                     protocol=None))
