"""OTB, UAV123 and NfS read through the got10k toolkit's own dataset classes, the reference for which sequences exist,
their frame ranges and how their files are read, so our sequences are frame for frame those of ``ExperimentOTB``
/ ``UAV123`` / ``NfS``. Wrapped so that they never download, never print, read a root or sequence folder whose name
holds glob characters as a plain name, and name a malformed file (and line) before the toolkit trips on it.
"""
from __future__ import annotations

import contextlib
import glob
import io
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..sequence import AnnotationError, Sequence
from ..annotations import read_boxes
from .names import check_sequence_name

BYTE_ORDER_MARK = b"\xef\xbb\xbf"


def import_got10k_datasets() -> Any:
    try:
        import got10k.datasets
    except ImportError as e:
        raise ImportError("the OTB, UAV123 and NfS readers use the got10k toolkit's dataset classes: "
                          "pip install 'lorat-plugin[got10k]'") from e
    return got10k.datasets


def build_dataset(cls: type, root: Path, *args: Any, **kwargs: Any) -> Any:
    """A got10k dataset on ``root``, quietly (no 'Warning: sequence X not exists' on stdout).

    The classes glob below their root (``root/*/30/*.txt``), so the root goes in escaped: ``data[1]`` is a folder
    name, not a pattern; the paths they find come back unescaped. Their own root check (``_check_integrity``)
    would list the escaped name; the readers check the root themselves (``require_dir``) and it is skipped.
    """
    class Toolkit(cls):
        def _check_integrity(self, *_: Any) -> None:
            pass

    Toolkit.__name__ = cls.__name__
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return Toolkit(glob.escape(str(root)), *args, **kwargs)
        except Exception as e:  # got10k asserts, or raises a bare Exception('Dataset not found or corrupted.')
            if isinstance(e, (AssertionError, FileNotFoundError)) or type(e) is Exception:
                raise FileNotFoundError(f"{cls.__name__} found no data under {root}: {e}") from e
            raise


def refuse_byte_order_mark(path: Path) -> None:
    """The toolkit opens annotation files as plain text: a UTF-8 byte-order mark becomes part of the first number
    and its reader fails on it (so would ``ExperimentOTB``), so it is refused here naming the file and line."""
    with open(path, "rb") as handle:
        if handle.read(len(BYTE_ORDER_MARK)) == BYTE_ORDER_MARK:
            raise AnnotationError(f"{path}, line 1: starts with a UTF-8 byte-order mark, which the got10k toolkit's "
                                  "reader cannot parse: save the file without it")


@contextlib.contextmanager
def _escaped_folder(dataset: Any, index: int, globbed: bool) -> Any:
    """While the toolkit lists a sequence's frames with ``glob(seq_dir + '/*.jpg')`` (OTB, NfS), its folder is
    escaped like the root (a sequence folder ``bee[1]`` is a name)."""
    if not globbed:
        yield
        return
    real = dataset.seq_dirs[index]
    dataset.seq_dirs[index] = glob.escape(real)
    try:
        yield
    finally:
        dataset.seq_dirs[index] = real


def load_sequences(dataset: Any, key: str, attributes: dict, *, frame_folder: Callable[[Any, int], Path],
                   check: Callable[[Path], int] = lambda path: len(read_boxes(path)), one_based: bool = False,
                   globbed_frames: bool = False) -> list[Sequence]:
    """Every sequence of a got10k dataset object. Before the toolkit reads a sequence, ``check(anno_file)`` (a
    strict parser that accepts what the toolkit's reader accepts and returns the number of annotated frames) names
    a malformed line, and the frame folder ``frame_folder(dataset, index)`` must exist; after it, the first and last
    frame must exist (UAV123 derives frame paths from its frame ranges without listing them)."""
    sequences = []
    for index, name in enumerate(dataset.seq_names):
        anno_file = Path(dataset.anno_files[index])
        check_sequence_name(name, anno_file)  # before it becomes part of a frame folder's path
        refuse_byte_order_mark(anno_file)
        annotated = check(anno_file)
        folder = frame_folder(dataset, index)
        if not folder.is_dir():
            raise AnnotationError(f"frame folder not found: {folder} (sequence {name}, annotation {anno_file})")
        try:
            with contextlib.redirect_stdout(io.StringIO()), _escaped_folder(dataset, index, globbed_frames):
                img_files, anno = dataset[index]
        except (AssertionError, ValueError, IndexError) as e:
            images = sum(1 for entry in os.scandir(folder) if entry.name.endswith(".jpg"))
            reason = f"{type(e).__name__}: {e}" if str(e) else "its reader's check failed"
            raise AnnotationError(f"{anno_file}: annotation does not match the frames of sequence {name}: "
                                  f"{annotated} annotated frames, {images} .jpg images in {folder} ({reason})") from e
        boxes = np.asarray(anno, dtype=np.float64).reshape(-1, 4)
        if len(img_files) != len(boxes) or len(boxes) == 0:
            raise AnnotationError(f"{anno_file}: {len(boxes)} boxes for {len(img_files)} frames")
        for frame in (img_files[0], img_files[-1]):
            if not os.path.isfile(frame):
                raise AnnotationError(f"{anno_file}: frame not found: {frame} (sequence {name} has frames "
                                      f"{Path(img_files[0]).name}..{Path(img_files[-1]).name})")
        if one_based:
            boxes[:, :2] -= 1.0  # 1-based MATLAB pixels -> 0-based
        sequences.append(Sequence(name, [Path(f) for f in img_files], boxes, dataset=key, attributes=dict(attributes)))
    return sequences
