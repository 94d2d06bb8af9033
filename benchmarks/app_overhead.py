"""`lorat app`'s tracking against `lorat track`'s on the same video and targets: frames per second of
``engine.track_targets`` and of the page's tracking session (which also keeps every box and logs the events the
page follows, while the frames are JPEG-encoded for the page on another thread), alternated.

  python benchmarks/app_overhead.py --frames 60 --alternations 3 --threads 1

Default model: the shipped demo model on the CPU (docs/app.md, "Speed").
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--alternations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    options, model_flags = parser.parse_known_args()

    from lorat_plugin.app.frames import FrameStore
    from lorat_plugin.app.session import TrackingSession
    from lorat_plugin.cli import build_parser
    from lorat_plugin.commands.common import engine_from_args
    from lorat_plugin.data.synthetic import moving_box_video
    from lorat_plugin.data.video import open_frames, write_video
    from lorat_plugin.engine import track_targets

    args = build_parser().parse_args(["app", "--threads", str(options.threads), *model_flags])
    engine = engine_from_args(args)[0]
    frames, truth = moving_box_video(options.frames, (320, 240), box=(40, 60, 40, 30), step=(3, 1))
    boxes = np.array([truth[0], (200, 150, 40, 40)])  # the target and a patch of background
    video = write_video(Path(tempfile.mkdtemp()) / "clip.mp4", frames)
    for alternation in range(options.alternations):
        started = time.perf_counter()
        for _ in track_targets(engine, open_frames(video), boxes):
            pass
        command_line = options.frames / (time.perf_counter() - started)
        store = FrameStore("clip.mp4", open_frames(video))
        store.decode_in_background()
        session = TrackingSession("measure", store, engine, threading.Lock())
        for box in boxes:
            session.set_box(0, box)
        started = time.perf_counter()
        session.start()
        session.wait()
        page = options.frames / (time.perf_counter() - started)
        print(f"{alternation + 1}: track_targets {command_line:.1f} frames/s, app session {page:.1f} frames/s "
              f"({len(boxes)} targets, {options.frames} frames 320x240)")


if __name__ == "__main__":
    main()
