"""OTB, UAV123 and NfS read through the got10k toolkit's own dataset classes, the reference for which sequences exist,
their frame ranges and how their files are read, so our sequences are frame for frame those of ``ExperimentOTB``
/ ``UAV123`` / ``NfS``. Wrapped so that they never download, never print, and name a malformed file (and line).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..sequence import AnnotationError, Sequence
from ..annotations import read_boxes


def import_got10k_datasets() -> Any:
    try:
        import got10k.datasets
    except ImportError as e:
        raise ImportError("the OTB, UAV123 and NfS readers use the got10k toolkit's dataset classes: "
                          "pip install 'lorat-plugin[got10k]'") from e
    return got10k.datasets


def quietly(factory, *args, **kwargs) -> Any:
    """Build a got10k dataset without its stdout chatter ('Warning: sequence X not exists')."""
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return factory(*args, **kwargs)
        except Exception as e:  # got10k asserts, or raises a bare Exception('Dataset not found or corrupted.')
            if isinstance(e, (AssertionError, FileNotFoundError)) or type(e) is Exception:
                raise FileNotFoundError(f"{factory.__name__} found no data under {args[0]}: {e}") from e
            raise


def load_sequences(dataset: Any, key: str, attributes: dict, *, check: Callable[[Path], Any] = read_boxes,
                   one_based: bool = False) -> list[Sequence]:
    """Every sequence of a got10k dataset object; after a failure, the strict parser ``check(anno_file)`` names the
    malformed line."""
    sequences = []
    for index, name in enumerate(dataset.seq_names):
        anno_file = Path(dataset.anno_files[index])
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                img_files, anno = dataset[index]
        except (AssertionError, ValueError, IndexError) as e:
            check(anno_file)  # raises AnnotationError with the line if the file is malformed
            raise AnnotationError(f"{anno_file}: annotation does not match the frames of sequence {name} "
                                  f"({type(e).__name__}: {e})") from e
        boxes = np.asarray(anno, dtype=np.float64).reshape(-1, 4)
        if len(img_files) != len(boxes) or len(boxes) == 0:
            raise AnnotationError(f"{anno_file}: {len(boxes)} boxes for {len(img_files)} frames")
        if one_based:
            boxes[:, :2] -= 1.0  # 1-based MATLAB pixels -> 0-based
        sequences.append(Sequence(name, [Path(f) for f in img_files], boxes, dataset=key, attributes=dict(attributes)))
    return sequences
