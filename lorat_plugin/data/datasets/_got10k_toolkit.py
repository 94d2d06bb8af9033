"""OTB, UAV123 and NfS read through the got10k toolkit's own dataset classes, the reference for which sequences exist,
their frame ranges and how their files are read, so our sequences are frame for frame those of ``ExperimentOTB``
/ ``UAV123`` / ``NfS``. Wrapped so that they never download, never print, and name a malformed file (and line).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from ..sequence import AnnotationError
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
        except (AssertionError, FileNotFoundError) as e:
            name = getattr(factory, "__name__", factory)
            raise FileNotFoundError(f"{name} found no data under {args[0]}: {e}") from e
        except Exception as e:  # got10k raises bare Exception('Dataset not found or corrupted.')
            if type(e) is Exception:
                raise FileNotFoundError(f"{getattr(factory, '__name__', factory)}: {e} ({args[0]})") from e
            raise


def items(dataset: Any, index: int, anno_file: str | Path, check=read_boxes) -> tuple[list[Path], np.ndarray]:
    """``dataset[index]`` as (frame paths, N x 4 boxes); after a failure, the strict parser ``check(anno_file)``
    names the malformed line."""
    anno_file = Path(anno_file)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            img_files, anno = dataset[index]
    except (AssertionError, ValueError, IndexError) as e:
        check(anno_file)  # raises AnnotationError with the line if the file is malformed
        raise AnnotationError(f"{anno_file}: annotation does not match the frames of sequence "
                              f"{dataset.seq_names[index]} ({type(e).__name__}: {e})") from e
    anno = np.asarray(anno, dtype=np.float64).reshape(-1, 4)
    if len(img_files) != len(anno) or len(anno) == 0:
        raise AnnotationError(f"{anno_file}: {len(anno)} boxes for {len(img_files)} frames")
    return [Path(f) for f in img_files], anno
