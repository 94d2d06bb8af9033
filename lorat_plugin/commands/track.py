"""Track one target in a video file (mp4, avi, ...), a folder of frames or a text file listing images.

Writes one line per frame, ``x,y,w,h,confidence`` (0-based pixels; the first line is the init box with confidence
1), and optionally renders the boxes onto the frames as a video or an animated GIF.

examples:
  lorat track clip.mp4 --init 120,80,40,60 --render clip_tracked.mp4
  lorat track Basketball/img --gt Basketball/groundtruth_rect.txt --one-based --output basketball.txt
  lorat track frames.txt --init 10,12,30,30 --variant B-224 --weights-dir ~/weights --device cuda --dtype bf16
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from ..data.annotations import read_boxes
from .common import add_backend_arguments, add_model_arguments, engine_from_args

PREDICTION_COLOR = (0, 255, 0)
GROUND_TRUTH_COLOR = (255, 255, 255)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video file, folder of frames, or .txt file listing image paths")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", metavar="X,Y,W,H", help="the target's box in the first frame")
    start.add_argument("--gt", metavar="FILE",
                       help="ground-truth file (x,y,w,h per line; comma, tab or space separated; NaN for unknown): "
                            "its first line starts the tracker, and the rendering also shows its boxes")
    parser.add_argument("--one-based", action="store_true",
                        help="the init box is 1-based (OTB/LaSOT files); the output is then written 1-based too")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="where to write the boxes (default: <input name>_boxes.txt in the current folder; "
                             "'-' for standard output)")
    parser.add_argument("--render", metavar="FILE", help="draw the boxes onto the frames: .mp4/.avi/.mkv/... or .gif")
    parser.add_argument("--fps", type=float, help="frame rate of the rendering (default: the input's, else 25)")
    add_model_arguments(parser)
    add_backend_arguments(parser)


def parse_box(text: str, origin: str = "--init") -> np.ndarray:
    parts = [p for p in re.split(r"[,\s;]+", text.strip()) if p]
    try:
        box = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"{origin}: expected four numbers x,y,w,h, got {text.strip()!r}")
    return box


class PartialBoxes:
    """``<output>.partial``, written line by line as the boxes come, so an interrupted run keeps its finished boxes.

    The first line goes to a hidden temporary file that replaces ``<output>.partial`` only once that line is on
    disk: a run that fails before its first box (or on a full disk) leaves an earlier run's ``.partial`` as it was.
    Write errors (a full disk) name the file; after one, the file is cut back to its last whole line, and removed
    when no line reached the disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._written_bytes = 0
        self._file: TextIO | None = None
        self._opened_as: Path | None = None  # the temporary name until the first line is on disk

    def write(self, line: str) -> None:
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._opened_as = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
                self._file = open(self._opened_as, "w", encoding="utf-8", buffering=1)  # a line at a time
            self._file.write(line)
            if self._opened_as != self.path:
                os.replace(self._opened_as, self.path)  # the open file keeps writing under its new name
                self._opened_as = self.path
        except OSError as e:
            self.abandon()
            raise OSError(e.errno, f"cannot write {self.path}: {e.strerror or e}") from e
        self.lines += 1
        self._written_bytes += len(line.encode("utf-8"))

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
        """After a failure: close without raising; keep only the whole lines on disk, or no file at all."""
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


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.video import VideoWriter, draw_boxes, open_frames
    from ..engine import track_frames

    offset = np.array((1.0, 1.0, 0.0, 0.0)) if args.one_based else np.zeros(4)
    ground_truth = read_boxes(Path(args.gt), kind="ground-truth") - offset if args.gt else None
    init_box = ground_truth[0] if ground_truth is not None else parse_box(args.init) - offset
    default = Path(Path(args.input.rstrip("/\\")).stem + "_boxes.txt")  # in the current folder
    output = None if args.output == "-" else Path(args.output) if args.output else default
    for path in (output, args.render):
        if path is not None and Path(path).is_dir():
            raise ValueError(f"{path} is a folder: give a file name")
    source = open_frames(args.input)  # FrameError now if the input is missing, before the model loads
    engine, _spec = engine_from_args(args)

    # Boxes go to <output>.partial as they come (replacing what an interrupted run left once this run has a box): it
    # becomes the output only when the whole input is tracked, and keeps the finished boxes when it is not.
    partial = None if output is None else PartialBoxes(output.with_name(output.name + ".partial"))
    writer = VideoWriter(args.render, fps=args.fps or source.fps or 25.0) if args.render else None
    sink = sys.stdout if partial is None else partial
    count, started = 0, time.perf_counter()
    try:
        with tqdm(total=len(source) or None, unit="frame", desc=Path(args.input).name, disable=not args.progress,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            for index, (frame, box, score) in enumerate(track_frames(engine, source, init_box)):
                x, y, w, h = box + offset
                sink.write(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f},{score:.4f}\n")
                count += 1
                if writer is not None:
                    shown = [(box, PREDICTION_COLOR, f"{score:.2f}")]  # box, color, label
                    if ground_truth is not None and index < len(ground_truth):
                        shown.insert(0, (ground_truth[index], GROUND_TRUTH_COLOR, None))
                    writer.write(draw_boxes(frame, *zip(*shown)))
                bar.update()
        if not count:
            raise ValueError(f"{args.input} has no frames")
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        if partial is not None:
            partial.abandon()
            if partial.lines:
                print(f"lorat track: stopped after {partial.lines} frames; their boxes are in {partial.path}",
                      file=sys.stderr)
        raise
    if partial is not None:
        partial.finish(output)
    elapsed = time.perf_counter() - started
    concealed = (f"; {source.decode_errors} decoder errors concealed (damaged video: see the warning)"
                 if source.decode_errors else "")
    print(f"{count} frames in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.1f} fps)" + (f"; boxes: {output}"
          if output else "") + (f"; rendering: {writer.path}" if writer else "") + concealed, file=sys.stderr)
    return 0
