"""Track one or several targets in a video file (mp4, avi, ...), a folder of frames, a text file listing images, a
camera, or an RTSP/HTTP stream.

Writes one line per frame, ``x,y,w,h,confidence`` (0-based pixels; the first line is the init box with confidence
1), one file per target, or with ``--output boxes.csv`` one ``frame,target,x,y,w,h,confidence`` file for all
targets; optionally renders the boxes onto the frames as a video or an animated GIF. Cameras and streams are
tracked in real time (the newest frame; those that came while the tracker was busy are dropped and counted).

examples:
  lorat track clip.mp4 --init 120,80,40,60 --render clip_tracked.mp4
  lorat track clip.mp4 --init 120,80,40,60 --init 300,90,50,50 --output boxes.csv --render both.mp4
  lorat track --camera 0 --init 280,200,80,80 --output live.csv      (Ctrl-C ends it, every output written)
  lorat track rtsp://192.168.1.20:8554/cam --init-file targets.txt --output cam.csv
  lorat track clip.mp4 --select                  (draw the targets in a browser page; it prints the URL)
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
from ..data.live import DEFAULT_STALL_TIMEOUT
from ..data.target_files import ONE_BASED_OFFSET, TargetBoxWriter, parse_box, read_init_boxes
from ..palette import GROUND_TRUTH, target_colour
from .common import add_backend_arguments, add_model_arguments, engine_from_args, frame_size

PREDICTION_COLOR = (0, 255, 0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?",
                        help="video file, folder of frames, .txt file listing image paths, camera device "
                             "(/dev/video0), rtsp:// stream, or http(s):// URL of a video file or MJPEG stream")
    parser.add_argument("--camera", type=int, metavar="N",
                        help="track camera N instead of an INPUT (/dev/videoN on Linux; AVFoundation's N on macOS)")
    parser.add_argument("--camera-size", type=frame_size, metavar="WxH",
                        help="ask the camera for this frame size (default: its own)")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", metavar="X,Y,W,H", action="append",
                       help="a target's box in the first frame; repeat it for several targets (ids 1, 2, ... in "
                            "this order), all tracked together")
    start.add_argument("--init-file", metavar="FILE",
                       help="the targets' boxes in the first frame, one x,y,w,h per line (comma or space "
                            "separated; blank lines and # comments skipped)")
    start.add_argument("--select", action="store_true",
                       help="draw the targets with the mouse instead: serves the `lorat app` page on INPUT's first "
                            "frame (127.0.0.1) and prints its URL; track and export there (docs/app.md)")
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
    parser.add_argument("--fps", type=float,
                        help="frame rate of the rendering, and of a file or folder played with --realtime (default: "
                             "the input's, else 25)")
    parser.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                        help="track the newest frame, dropping those that came while the tracker was busy (default "
                             "for cameras, RTSP and HTTP streams without an end); a file is played at its frame rate")
    parser.add_argument("--stall-timeout", type=positive_seconds, default=DEFAULT_STALL_TIMEOUT, metavar="SECONDS",
                        help="end a camera or stream that delivers no frame for this long, with every output "
                             "written (default: %(default)g)")
    add_model_arguments(parser)
    add_backend_arguments(parser)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


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
        shown.insert(0, (truth, GROUND_TRUTH, None))
    return shown


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.live import NewestFrames, latency_summary, open_source, source_stem
    from ..data.video import VideoWriter, draw_boxes
    from ..engine import track_targets

    if (args.input is None) == (args.camera is None):
        raise ValueError("give an INPUT or --camera N (one of them)")
    if args.select:
        from ..app.serve import select_targets

        if args.output or args.render:
            raise ValueError("--select: the page exports the boxes and the rendering (Export CSV, Export rendered "
                             "video): give no --output or --render with it")

        return select_targets(args)
    named = args.input if args.camera is None else args.camera
    offset = ONE_BASED_OFFSET if args.one_based else np.zeros(4)
    init_boxes, ground_truth = init_boxes_from_args(args, offset)
    default = Path(source_stem(named) + "_boxes.txt")  # in the current folder
    output = None if args.output == "-" else Path(args.output) if args.output else default
    for path in (output, args.render):
        if path is not None and Path(path).is_dir():
            raise ValueError(f"{path} is a folder: give a file name")
    # FrameError now if the input is missing or the stream does not answer, before the model loads
    source = open_source(named, stall_timeout=args.stall_timeout, camera_size=args.camera_size)
    engine, _spec = engine_from_args(args)

    fps = args.fps or source.fps or 25.0
    realtime = source.live if args.realtime is None else args.realtime
    # A live source comes at its own pace; a file is played at its frame rate, as a camera would deliver it.
    reader = NewestFrames(source, stall_timeout=args.stall_timeout, pace_fps=None if source.live else fps
                          ) if realtime else None
    # Boxes go to <file>.partial as they come (replacing what an interrupted run left once this run has a box): each
    # becomes its output file only when the whole input is tracked, and keeps the finished boxes when it is not.
    boxes_out = TargetBoxWriter(output, len(init_boxes), one_based=args.one_based)
    writer = VideoWriter(args.render, fps=fps) if args.render else None
    latencies: list[float] = []
    interrupted = False
    started = time.perf_counter()
    try:
        with tqdm(total=None if realtime else len(source) or None, unit="frame", desc=source.name,
                  disable=not args.progress, file=sys.stderr, dynamic_ncols=True) as bar:
            try:
                for frame, boxes, scores in track_targets(engine, reader or source, init_boxes):
                    number = reader.frame_number if reader else boxes_out.frames + 1
                    boxes_out.write(boxes, scores, number)
                    if writer is not None:
                        truth = (ground_truth[number - 1] if ground_truth is not None and number <= len(ground_truth)
                                 else None)
                        writer.write(draw_boxes(frame, *zip(*shown_boxes(boxes, scores, truth))))
                    if reader is not None:
                        latencies.append(time.perf_counter() - reader.arrived)
                    bar.update()
            except KeyboardInterrupt:
                if reader is None:
                    raise
                interrupted = True  # in real time, Ctrl-C is how a live source ends: every output is written
        if not boxes_out.frames:
            raise ValueError(f"{source.name} has no frames" + (f" ({reader.end})" if reader and reader.end else ""))
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
    if reader is None:
        summary = f"{count} frames in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.1f} fps)"
    else:
        end = "stopped by Ctrl-C" if interrupted else reader.end
        summary = (f"real time: {count} frames tracked, {reader.dropped} dropped in {elapsed:.1f} s "
                   f"({count / max(elapsed, 1e-9):.1f} fps); {latency_summary(latencies)}; {end}")
    print(summary + (f"; boxes: {', '.join(map(str, written))}" if written else "") + (
          f"; rendering: {writer.path}" if writer else "") + concealed, file=sys.stderr)
    return 1 if reader is not None and reader.failed and not interrupted else 0
