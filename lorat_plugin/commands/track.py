"""Track one or several targets in a video file (mp4, avi, ...), a folder of frames or a text file listing images.

Writes one line per frame, ``x,y,w,h,confidence`` (0-based pixels; the first line is the init box with confidence
1), one file per target, or with ``--output boxes.csv`` one ``frame,target,x,y,w,h,confidence`` file for all
targets; optionally renders the boxes onto the frames as a video or an animated GIF.

examples:
  lorat track clip.mp4 --init 120,80,40,60 --render clip_tracked.mp4
  lorat track clip.mp4 --init 120,80,40,60 --init 300,90,50,50 --output boxes.csv --render both.mp4
  lorat track Basketball/img --gt Basketball/groundtruth_rect.txt --one-based --output basketball.txt
  lorat track frames.txt --init 10,12,30,30 --variant B-224 --weights-dir ~/weights --device cuda --dtype bf16
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..data.annotations import read_boxes
from ..data.target_files import ONE_BASED_OFFSET, TargetBoxWriter, parse_box, read_init_boxes
from ..palette import target_colour
from .common import add_backend_arguments, add_model_arguments, engine_from_args

PREDICTION_COLOR = (0, 255, 0)
GROUND_TRUTH_COLOR = (255, 255, 255)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video file, folder of frames, or .txt file listing image paths")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", metavar="X,Y,W,H", action="append",
                       help="a target's box in the first frame; repeat it for several targets (ids 1, 2, ... in "
                            "this order), all tracked together")
    start.add_argument("--init-file", metavar="FILE",
                       help="the targets' boxes in the first frame, one x,y,w,h per line (comma or space "
                            "separated; blank lines and # comments skipped)")
    start.add_argument("--gt", metavar="FILE",
                       help="ground-truth file (x,y,w,h per line; comma, tab or space separated; NaN for unknown): "
                            "its first line starts the tracker (one target), and the rendering also shows its boxes")
    parser.add_argument("--one-based", action="store_true",
                        help="the init boxes are 1-based (OTB/LaSOT files); the output is then written 1-based too")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="where to write the boxes (default: <input name>_boxes.txt in the current folder; "
                             "'-' for standard output). A .csv file holds every target's boxes as "
                             "frame,target,x,y,w,h,confidence rows; otherwise several targets get one "
                             "<stem>_<id>.txt file each")
    parser.add_argument("--render", metavar="FILE", help="draw the boxes onto the frames: .mp4/.avi/.mkv/... or .gif")
    parser.add_argument("--fps", type=float, help="frame rate of the rendering (default: the input's, else 25)")
    add_model_arguments(parser)
    add_backend_arguments(parser)


def init_boxes_from_args(args: argparse.Namespace, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(K x 4 0-based init boxes, the 0-based ground truth of ``--gt`` or ``None``)."""
    if args.gt:
        ground_truth = read_boxes(Path(args.gt), kind="ground-truth") - offset
        return ground_truth[:1], ground_truth
    if args.init_file:
        return read_init_boxes(args.init_file) - offset, None
    return np.stack([parse_box(text) for text in args.init]) - offset, None


def shown_boxes(boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray | None
                ) -> list[tuple[np.ndarray, tuple[int, int, int], str | None]]:
    """(box, colour, label) to draw: one target in green with its confidence, several each in its palette colour
    with ``<id>: <confidence>``; the ground truth's box (white, unlabelled) under them."""
    if len(boxes) == 1:
        shown = [(boxes[0], PREDICTION_COLOR, f"{scores[0]:.2f}")]
    else:
        shown = [(box, target_colour(index), f"{index + 1}: {score:.2f}")
                 for index, (box, score) in enumerate(zip(boxes, scores))]
    if truth is not None:
        shown.insert(0, (truth, GROUND_TRUTH_COLOR, None))
    return shown


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.video import VideoWriter, draw_boxes, open_frames
    from ..engine import track_targets

    offset = ONE_BASED_OFFSET if args.one_based else np.zeros(4)
    init_boxes, ground_truth = init_boxes_from_args(args, offset)
    default = Path(Path(args.input.rstrip("/\\")).stem + "_boxes.txt")  # in the current folder
    output = None if args.output == "-" else Path(args.output) if args.output else default
    for path in (output, args.render):
        if path is not None and Path(path).is_dir():
            raise ValueError(f"{path} is a folder: give a file name")
    source = open_frames(args.input)  # FrameError now if the input is missing, before the model loads
    engine, _spec = engine_from_args(args)

    # Boxes go to <file>.partial as they come (replacing what an interrupted run left once this run has a box): each
    # becomes its output file only when the whole input is tracked, and keeps the finished boxes when it is not.
    boxes_out = TargetBoxWriter(output, len(init_boxes), one_based=args.one_based)
    writer = VideoWriter(args.render, fps=args.fps or source.fps or 25.0) if args.render else None
    started = time.perf_counter()
    try:
        with tqdm(total=len(source) or None, unit="frame", desc=Path(args.input).name, disable=not args.progress,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            for index, (frame, boxes, scores) in enumerate(track_targets(engine, source, init_boxes)):
                boxes_out.write(boxes, scores)
                if writer is not None:
                    truth = ground_truth[index] if ground_truth is not None and index < len(ground_truth) else None
                    writer.write(draw_boxes(frame, *zip(*shown_boxes(boxes, scores, truth))))
                bar.update()
        if not boxes_out.frames:
            raise ValueError(f"{args.input} has no frames")
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        boxes_out.abandon()
        if boxes_out.frames and boxes_out.paths:
            print(f"lorat track: stopped after {boxes_out.frames} frames; their boxes are in "
                  f"{', '.join(map(str, boxes_out.partial_paths))}", file=sys.stderr)
        raise
    written = boxes_out.finish()
    count, elapsed = boxes_out.frames, time.perf_counter() - started
    concealed = (f"; {source.decode_errors} decoder errors concealed (damaged video: see the warning)"
                 if source.decode_errors else "")
    print(f"{count} frames in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.1f} fps)" + (
          f"; boxes: {', '.join(map(str, written))}" if written else "") + (
          f"; rendering: {writer.path}" if writer else "") + concealed, file=sys.stderr)
    return 0
