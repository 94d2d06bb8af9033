"""OTB, UAV123 and NfS: the sequences the got10k toolkit's own dataset classes list (the official names, OTB's
two-target names such as ``Jogging.1``, UAV123's folders from ``uav123.json``), each annotation file read once and
parsed by our strict reader, which names a malformed file and line, then matched to its frames by the rules of the
classes' ``__getitem__`` (got10k/datasets/otb.py, uav123.py, nfs.py), so our sequences are frame for frame those of
``ExperimentOTB`` / ``UAV123`` / ``NfS``. The classes are built so that they never download, never print and read a
root whose name holds glob characters as a plain name.
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
from ..annotations import parse_boxes, read_text
from .names import check_sequence_name

BYTE_ORDER_MARK = "\ufeff"  # as decoded by read_text(encoding="utf-8")


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


def refuse_byte_order_mark(text: str, path: Path) -> None:
    """The toolkit opens annotation files as plain text: a UTF-8 byte-order mark becomes part of the first number
    and its reader fails on it (so would ``ExperimentOTB``), so it is refused here naming the file and line."""
    if text.startswith(BYTE_ORDER_MARK):
        raise AnnotationError(f"{path}, line 1: starts with a UTF-8 byte-order mark, which the got10k toolkit's "
                              "reader cannot parse: save the file without it")


def list_jpgs(folder: Path) -> list[str]:
    """What the toolkit's ``sorted(glob.glob(folder + '/*.jpg'))`` lists (OTB, NfS), without reading the folder's
    name as a pattern (a sequence folder ``bee[1]`` is a name): names ending in ``.jpg``, hidden ones left out."""
    names = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".jpg") and entry.name[0] != "."]
    return [os.path.join(folder, name) for name in sorted(names)]


# a sequence's frames in its folder and its boxes, matched as the toolkit's __getitem__ matches them
MatchFrames = Callable[[Path, str, np.ndarray], tuple[list[str], np.ndarray]]


def load_sequences(dataset: Any, key: str, attributes: dict, *, frame_folder: Callable[[Any, int], Path],
                   match_frames: MatchFrames, parse: Callable[[str, Path], np.ndarray] = parse_boxes,
                   texts: dict[str, str] | None = None, one_based: bool = False) -> list[Sequence]:
    """Every sequence of a got10k dataset object. Its annotation file is read once (``texts`` holds those the
    dataset's constructor has read already) and parsed by ``parse(text, path)``, a strict parser that accepts what
    the toolkit's reader accepts (but a blank line inside the file, which ``np.loadtxt`` skips) and names a malformed
    line; the frame folder ``frame_folder(dataset, index)`` must
    exist; ``match_frames(folder, name, boxes)`` gives the frames and the boxes for them, which must be as many, and
    the first and last frame must exist (UAV123 derives frame paths from its frame ranges without listing them)."""
    texts = texts or {}
    sequences = []
    for index, name in enumerate(dataset.seq_names):
        anno_file = Path(dataset.anno_files[index])
        check_sequence_name(name, anno_file)  # before it becomes part of a frame folder's path
        text = texts.get(dataset.anno_files[index])
        if text is None:
            text = read_text(anno_file, encoding="utf-8")
        refuse_byte_order_mark(text, anno_file)
        annotated = parse(text, anno_file)
        folder = frame_folder(dataset, index)
        if not folder.is_dir():
            raise AnnotationError(f"frame folder not found: {folder} (sequence {name}, annotation {anno_file})")
        frames, boxes = match_frames(folder, name, annotated)
        if len(frames) != len(boxes):
            images = sum(1 for entry in os.scandir(folder) if entry.name.endswith(".jpg"))
            raise AnnotationError(f"{anno_file}: annotation does not match the frames of sequence {name}: "
                                  f"{len(annotated)} annotated frames, {images} .jpg images in {folder}")
        for frame in (frames[0], frames[-1]):
            if not os.path.isfile(frame):
                raise AnnotationError(f"{anno_file}: frame not found: {frame} (sequence {name} has frames "
                                      f"{Path(frames[0]).name}..{Path(frames[-1]).name})")
        if one_based:
            boxes[:, :2] -= 1.0  # 1-based MATLAB pixels -> 0-based
        sequences.append(Sequence(name, [Path(f) for f in frames], boxes, dataset=key, attributes=dict(attributes)))
    return sequences
