"""The box files of a tracking run: init boxes in, one or many targets' boxes out.

In: ``--init`` text (:func:`parse_box`) and init files, one box per line (:func:`read_init_boxes`).

Out, one line per frame as it is tracked (:class:`TargetBoxWriter`):

* ``.csv``: ``frame,target,x,y,w,h,confidence`` rows after that header line, one row per target and frame: the frame
  number 1-based as in MOTChallenge files, target ids from 1 in the order the init boxes were given;
* one target otherwise: ``x,y,w,h,confidence`` lines in the output file itself;
* several targets otherwise: the same lines, one ``<output stem>_<id><suffix>`` file per target.

Boxes are 0-based pixels unless ``one_based``. Every file is written to ``<file>.partial`` as the boxes come
(:class:`PartialBoxes`) and moved into place when the run finishes, so an interrupted run keeps its finished boxes
and a reader never sees half a file.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any, Iterable, TextIO

import numpy as np

CSV_HEADER = "frame,target,x,y,w,h,confidence"
ONE_BASED_OFFSET = np.array((1.0, 1.0, 0.0, 0.0))


def parse_box(text: str, origin: str = "--init") -> np.ndarray:
    """``x,y,w,h`` (commas, semicolons or spaces) as four finite floats; ``ValueError`` naming ``origin``."""
    parts = [p for p in re.split(r"[,\s;]+", text.strip()) if p]
    try:
        box = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"{origin}: expected four numbers x,y,w,h, got {text.strip()!r}")
    return box


def read_init_boxes(path: str | os.PathLike) -> np.ndarray:
    """K x 4 boxes, one ``x,y,w,h`` per line (comma or space separated); blank lines and ``#`` comments are skipped.
    A malformed line is a ``ValueError`` naming the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"init file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read init file {path}: {e}") from None
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if content:
            boxes.append(parse_box(content, origin=f"{path}, line {number}"))
    if not boxes:
        raise ValueError(f"init file {path} holds no boxes (one x,y,w,h per line)")
    return np.stack(boxes)


def box_line(box: np.ndarray, score: float) -> str:
    """``x,y,w,h,confidence`` with four decimals: the line of a one-target file."""
    x, y, w, h = box
    return f"{x:.4f},{y:.4f},{w:.4f},{h:.4f},{score:.4f}"


def csv_row(frame_number: int, target: int, box: np.ndarray, score: float) -> str:
    """One ``frame,target,x,y,w,h,confidence`` row of the CSV (ending in a newline)."""
    return f"{frame_number},{target},{box_line(box, score)}\n"


def target_file(output: Path, target: int) -> Path:
    """The file of target ``target`` (1-based) of a several-target run without ``.csv``: ``<stem>_<id><suffix>``."""
    return output.with_name(f"{output.stem}_{target}{output.suffix or '.txt'}")


class PartialBoxes:
    """``<output>.partial``, written one frame's record at a time as the boxes come, so an interrupted run keeps its
    finished boxes.

    The first record goes to a hidden temporary file that replaces ``<output>.partial`` only once that record is on
    disk: a run that fails before its first box (or on a full disk) leaves an earlier run's ``.partial`` as it was.
    Write errors (a full disk) name the file; after one, the file is cut back to its last whole record, and removed
    when no record reached the disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self._written_bytes = 0
        self._file: TextIO | None = None
        self._opened_as: Path | None = None  # the temporary name until the first record is on disk

    def write(self, record: str) -> None:
        """Write one record (one frame's line or lines, each ending in a newline)."""
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._opened_as = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
                self._file = open(self._opened_as, "w", encoding="utf-8", buffering=1)  # flushed at each newline
            self._file.write(record)
            if self._opened_as != self.path:
                os.replace(self._opened_as, self.path)  # the open file keeps writing under its new name
                self._opened_as = self.path
        except OSError as e:
            self.abandon()
            raise OSError(e.errno, f"cannot write {self.path}: {e.strerror or e}") from e
        self.records += 1
        self._written_bytes += len(record.encode("utf-8"))

    def finish(self, output: Path) -> None:
        """Close and move the finished boxes to ``output``."""
        if self._file is None:
            return
        try:
            self._file.close()
        except OSError as e:
            self.abandon()
            raise OSError(e.errno, f"cannot write {self.path}: {e.strerror or e}") from e
        self._file = None
        os.replace(self.path, output)

    def abandon(self) -> None:
        """After a failure: close without raising; keep only the whole records on disk, or no file at all."""
        if self._file is None:
            return
        with contextlib.suppress(OSError):  # a close after a failed write fails again the same way
            self._file.close()
        self._file = None
        with contextlib.suppress(OSError):
            if self._written_bytes == 0:
                os.unlink(self._opened_as)
            else:
                os.truncate(self._opened_as, self._written_bytes)  # a half-written last line would not parse


class TargetBoxWriter:
    """Writes the boxes of ``targets`` targets frame by frame to ``output`` (``None``: standard output) by the rules
    of this module; several targets on standard output are written as CSV.

    ``write(boxes, scores)`` takes one frame's K x 4 boxes (0-based) and K confidences; ``frame_number`` (1-based)
    defaults to the count of frames written, and is the source's own number where frames were skipped (real-time
    mode drops frames). ``finish()`` moves every file into place and returns their paths; ``abandon()`` (after a
    failure) keeps each ``.partial`` file's whole frames. ``csv`` overrides the rules' choice of format.
    """

    def __init__(self, output: Path | None, targets: int, *, one_based: bool = False, csv: bool | None = None) -> None:
        if targets < 1:
            raise ValueError(f"a box file needs at least one target, got {targets}")
        self.output = output
        self.targets = targets
        self.offset = ONE_BASED_OFFSET if one_based else np.zeros(4)
        self.frames = 0
        if csv is None:  # by the rules above
            csv = targets > 1 if output is None else output.suffix.lower() == ".csv"
        self.csv = csv
        if output is None:
            self.paths: list[Path] = []
        elif self.csv or targets == 1:
            self.paths = [output]
        else:
            self.paths = [target_file(output, target) for target in range(1, targets + 1)]
        self._partials = [PartialBoxes(path.with_name(path.name + ".partial")) for path in self.paths]

    @property
    def partial_paths(self) -> list[Path]:
        return [partial.path for partial in self._partials]

    def write(self, boxes: Any, scores: Any, frame_number: int | None = None) -> None:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) + self.offset
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(boxes) != self.targets or len(scores) != self.targets:
            raise ValueError(f"expected {self.targets} boxes and confidences, got {len(boxes)} and {len(scores)}")
        number = self.frames + 1 if frame_number is None else int(frame_number)
        if self.csv:
            rows = "".join(csv_row(number, target, box, score)
                           for target, (box, score) in enumerate(zip(boxes, scores), start=1))
            records = [(CSV_HEADER + "\n" if self.frames == 0 else "") + rows]
        else:
            records = [box_line(box, score) + "\n" for box, score in zip(boxes, scores)]
        if self.output is None:
            sys.stdout.write("".join(records))
        else:
            for partial, record in zip(self._partials, records):
                partial.write(record)
        self.frames += 1

    def finish(self) -> list[Path]:
        """Move every finished file into place; the paths written."""
        for partial, path in zip(self._partials, self.paths):
            partial.finish(path)
        return self.paths

    def abandon(self) -> None:
        for partial in self._partials:
            partial.abandon()


def write_targets_csv(path: str | os.PathLike, frames_boxes_scores: Iterable[tuple[Any, Any, Any]],
                      one_based: bool = False) -> Path:
    """Write a whole run as ``frame,target,x,y,w,h,confidence`` CSV: ``(frame, K x 4 boxes, K confidences)`` per
    frame, as :func:`lorat_plugin.engine.track_targets` yields them. ``frame`` is the frame's 1-based number (an
    int) or the frame itself, which is then numbered by its position (1, 2, ...)."""
    path = Path(path)
    writer: TargetBoxWriter | None = None
    try:
        for frame, boxes, scores in frames_boxes_scores:
            if writer is None:
                writer = TargetBoxWriter(path, len(np.asarray(scores).reshape(-1)), one_based=one_based, csv=True)
            writer.write(boxes, scores, frame if isinstance(frame, (int, np.integer)) else None)
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    if writer is None:
        raise ValueError(f"no frames to write to {path}")
    return writer.finish()[0]
