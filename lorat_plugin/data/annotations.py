"""Strict parsing of annotation and result files and frame listing, shared by the readers and evaluation.

Training lists tens of thousands of sequences, so a file costs one read and one vectorised conversion; only a file
that fails that fast path is re-read line by line to name the bad line.
"""
from __future__ import annotations

import io
import logging
import os
import re
from collections import abc
from pathlib import Path

import numpy as np

from .sequence import AnnotationError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
log = logging.getLogger(__name__)


def read_text(path: Path, *, kind: str = "annotation", encoding: str = "utf-8-sig") -> str:
    """A text file, undecodable bytes replaced; ``encoding="utf-8"`` keeps a byte-order mark as the first character,
    for a reader that refuses it."""
    try:
        return Path(path).read_text(encoding=encoding, errors="replace")
    except FileNotFoundError as e:
        raise AnnotationError(f"{kind} file not found: {path}") from e
    except OSError as e:
        raise AnnotationError(f"cannot read {kind} file {path}: {e}") from e


def read_boxes(path: Path, *, columns: int = 4, kind: str = "annotation") -> np.ndarray:
    """An N x ``columns`` float64 table, values separated by commas, tabs or spaces; ``NaN`` accepted (UAV123 marks
    absent targets that way), blank lines at the end ignored."""
    return parse_boxes(read_text(path, kind=kind), path, columns=columns, kind=kind)


def parse_boxes(text: str, path: Path, *, columns: int = 4, kind: str = "annotation",
                commas_only: bool = False) -> np.ndarray:
    """:func:`read_boxes` on the text of ``path`` already read. ``commas_only``: a space or tab is not a separator
    (UAV123, which got10k's reader parses with ``np.loadtxt(delimiter=',')``)."""
    lines = text.rstrip().splitlines()
    if not lines or not text.strip():
        raise AnnotationError(f"{path}: empty {kind} file")
    # the lines joined with a ";" token between them: every line holds ``columns`` values exactly when every
    # (columns + 1)-th token is a ";" (a count of all tokens alone would take rows of 3 and 5 values for two of 4)
    if commas_only:
        tokens = ",;,".join(lines).split(",")
    else:
        tokens = " ; ".join(lines).replace(",", " ").split()  # str.split: several times faster than a regex
    line_ends = tokens[columns::columns + 1]
    if len(tokens) == len(lines) * (columns + 1) - 1 and line_ends.count(";") == len(line_ends):
        del tokens[columns::columns + 1]
        try:
            return np.array(tokens, dtype=np.float64).reshape(len(lines), columns)
        except ValueError:
            pass  # a non-number somewhere: find it below
    for number, line in enumerate(lines, start=1):
        fields = line.split(",") if commas_only else line.replace(",", " ").split()
        if len(fields) == columns and all(_is_number(field) for field in fields):
            continue
        if commas_only:
            raise AnnotationError(f"{path}, line {number}: expected {columns} comma-separated numbers (NaN for an "
                                  f"absent target), got {line.strip()!r}")
        if len(fields) != columns:
            raise AnnotationError(f"{path}, line {number}: expected {columns} numbers, got {line.strip()!r}")
        raise AnnotationError(f"{path}, line {number}: not a number in {line.strip()!r}")
    raise AnnotationError(f"{path}: malformed {kind} file")  # unreachable in practice


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def format_table(values: np.ndarray, fmt: str = "%.10g", delimiter: str = ",") -> str:
    """Rows of numbers as text, as ``np.savetxt`` writes them (the got10k toolkit writes its files with it): the
    inverse of :func:`read_boxes` for annotation and result files."""
    buffer = io.StringIO()
    np.savetxt(buffer, values, fmt=fmt, delimiter=delimiter)
    return buffer.getvalue()


def read_flags(path: Path, expected: int | None = None, *, name: str = "flags") -> np.ndarray:
    """Per-frame integer labels, one per line (GOT-10k ``*.label``) or comma-separated (LaSOT ``*.txt``)."""
    text = read_text(path).strip()
    tokens = text.replace(",", " ").split()
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        for number, line in enumerate(text.splitlines(), start=1):
            for field in line.replace(",", " ").split():
                try:
                    float(field)
                except ValueError:
                    raise AnnotationError(f"{path}, line {number}: {name} must be numbers, got {field!r}") from None
        raise AnnotationError(f"{path}: malformed {name}") from None
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        bad = int(np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))[0])
        raise AnnotationError(f"{path}: {name} must be integers, entry {bad + 1} is {tokens[bad]!r}")
    if expected is not None and len(values) != expected:
        raise AnnotationError(f"{path}: {len(values)} {name} for {expected} frames")
    return values.astype(np.int64)


def natural_key(text: str) -> list:
    """Sort key that puts ``seq-2`` before ``seq-10`` (sequence names, frame files)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in natural order (no decoding)."""
    try:
        names = [entry.name for entry in os.scandir(folder)
                 if entry.name.lower().endswith(IMAGE_SUFFIXES) and not entry.name.startswith(".")]
    except FileNotFoundError as e:
        raise AnnotationError(f"frame folder not found: {folder}") from e
    return [folder / name for name in sorted(names, key=natural_key)]


class FrameList(abc.Sequence):
    """The read-only ``list[Path]`` of ``folder / (pattern % i)`` for ``i`` from ``start``, each made on access:
    training sets hold millions of frames, a ``Path`` for each at listing time would take minutes and gigabytes."""

    __slots__ = ("folder", "pattern", "start", "count")

    def __init__(self, folder: Path, pattern: str, start: int, count: int):
        self.folder, self.pattern, self.start, self.count = str(folder), pattern, int(start), int(count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(f"frame {index} of {self.count}")
        return Path(os.path.join(self.folder, self.pattern % (self.start + index)))

    def __eq__(self, other) -> bool:
        if isinstance(other, FrameList):
            return (self.folder, self.pattern, self.start, self.count) == \
                (other.folder, other.pattern, other.start, other.count)
        return isinstance(other, (list, tuple)) and len(other) == self.count and all(
            Path(a) == b for a, b in zip(other, self))

    def __repr__(self) -> str:
        return f"FrameList({self.folder!r}, {self.pattern!r}, start={self.start}, count={self.count})"


def numbered_frames(folder: Path, count: int, pattern: str, *, start: int, annotation: Path,
                    rule: str) -> abc.Sequence:
    """Frame paths ``pattern % i`` for the ``count`` annotated frames, derived rather than listed (large training
    sets): the first and last must exist, the folder is listed only when the next one exists too or the names do not
    (e.g. PNG instead of JPEG)."""
    frames = FrameList(folder, pattern, start, count)
    if count and os.path.isfile(os.path.join(frames.folder, pattern % start)) and \
            os.path.isfile(os.path.join(frames.folder, pattern % (start + count - 1))):
        if os.path.isfile(os.path.join(frames.folder, pattern % (start + count))):
            listed = list_images(folder)
            check_frame_count(annotation, count, len(listed), folder, rule)
            # listed anyway: a gap in the numbering (a frame missing, a later one in its place) is found here
            names = {path.name for path in listed}
            missing = next((pattern % i for i in range(start, start + count) if pattern % i not in names), None)
            if missing is not None:
                raise AnnotationError(f"{annotation}: frame {folder / missing} is missing (the annotated frames are "
                                      f"{pattern % start}..{pattern % (start + count - 1)}, without gaps)")
        return frames
    listed = list_images(folder)
    check_frame_count(annotation, count, len(listed), folder, rule)
    return listed[:count]


def check_frame_count(annotation: Path, count: int, frames: int, folder: Path, rule: str) -> None:
    """The official toolkit's rule for an annotation that does not cover every frame: ``"equal"``, they must agree
    (got10k/datasets/got10k.py, trackingnet.py); ``"annotated"``, the annotated frames are kept with a warning
    (LaSOT, TNL2K). Fewer frames than annotated lines is an error under both."""
    if frames == count:
        return
    message = f"{annotation}: {count} annotated frames but {frames} images in {folder}"
    if frames < count or rule == "equal":
        raise AnnotationError(message)
    log.warning("%s; tracking and scoring the annotated %d, as the benchmark's toolkit does", message, count)


def sequence_folders(root: Path, marker: str) -> list[Path]:
    """Sub-folders of ``root`` that contain the file ``marker``, in natural order."""
    found = [Path(entry.path) for entry in os.scandir(root)
             if entry.is_dir() and os.path.isfile(os.path.join(entry.path, marker))]
    return sorted(found, key=lambda p: natural_key(p.name))


def require_dir(root: str | Path, dataset: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset} root not found: {root}")
    return root
