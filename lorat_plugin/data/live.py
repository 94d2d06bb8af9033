"""Live frame sources -- cameras and network streams read through PyAV (FFmpeg) -- and the real-time reader.

:func:`open_source` opens what a user names: a camera (its number, or a ``/dev/videoN`` path: V4L2 on Linux,
AVFoundation on macOS), an ``rtsp://`` stream, an ``http(s)://`` URL of a video file or of an MJPEG stream, or
anything :func:`~lorat_plugin.data.video.open_frames` reads (video files, frame folders, image lists).

:class:`NewestFrames` reads a source on a thread and hands out only its newest frame: a tracker slower than the
source skips the frames that arrived while it was busy (counted as dropped) instead of falling ever further behind.
A source that delivers nothing for ``stall_timeout`` seconds, ends or fails ends the iteration with the reason in
:attr:`NewestFrames.end`.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlsplit

import numpy as np

from .sequence import FrameError
from .video import FrameSource, _import_av, open_frames, rgb_pixels

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
CAMERA_PATH = re.compile(r"/dev/video\d+")
DEFAULT_STALL_TIMEOUT = 5.0  # seconds without a frame before a live source counts as stalled
OPEN_TIMEOUT = 10.0  # seconds to connect to a network stream (RTSP's handshake is several round trips)


class StreamFrames(FrameSource):
    """A camera or a network stream, opened once and read once, in arrival order (it cannot be rewound).

    ``live``: the source produces frames in real time and has no end (a camera, RTSP, an HTTP stream without a
    duration, such as MJPEG), as opposed to an HTTP video file. ``fps`` is what the stream declares (a live MJPEG
    stream declares none). A read that waits longer than ``stall_timeout`` ends with a ``FrameError`` saying so.
    """

    def __init__(self, url: str, *, name: str, live: bool | None = None, format: str | None = None,
                 options: dict[str, str] | None = None, stall_timeout: float = DEFAULT_STALL_TIMEOUT,
                 open_timeout: float = OPEN_TIMEOUT) -> None:
        av = _import_av()
        self.url = url
        self._name = name
        self.path = Path(name)
        self.stall_timeout = float(stall_timeout)
        try:
            self._container = av.open(url, format=format, options=dict(options or {}),
                                      timeout=(open_timeout, self.stall_timeout))
        except av.ExitError:
            raise FrameError(f"cannot open {name}: no answer within {open_timeout:g} s") from None
        except (av.FFmpegError, OSError, ValueError) as e:
            raise FrameError(f"cannot open {name}: {_reason(e)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise FrameError(f"{name} has no video stream")
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        duration = self._container.duration
        self.live = duration is None if live is None else live
        self._frames = int(stream.frames or 0) or round((duration or 0) / av.time_base * (self.fps or 0))
        self._read = False

    @property
    def name(self) -> str:
        return self._name

    def __len__(self) -> int:
        return self._frames

    def __iter__(self) -> Iterator[np.ndarray]:
        av = _import_av()
        if self._read:
            raise FrameError(f"{self.name} is a stream: it can be read only once")
        self._read = True
        index = 0
        try:
            for frame in self._container.decode(self._container.streams.video[0]):
                yield rgb_pixels(frame)
                index += 1
        except av.ExitError:
            raise FrameError(f"{self.name}: no data for {self.stall_timeout:g} s after frame {index} "
                             "(the stream stalled)") from None
        except (av.FFmpegError, OSError, ValueError) as e:
            raise FrameError(f"{self.name}: the stream broke after frame {index}: {_reason(e)}") from None
        finally:
            self.close()

    def close(self) -> None:
        self._container.close()


def _reason(error: Exception) -> str:
    """PyAV's message without the URL it appends (the caller names the source)."""
    return getattr(error, "strerror", None) or str(error)


def is_camera(source: str | int) -> bool:
    return isinstance(source, int) or bool(CAMERA_PATH.fullmatch(str(source)))


def is_network(source: str | int) -> bool:
    return isinstance(source, str) and urlsplit(source).scheme.lower() in NETWORK_SCHEMES


def source_stem(source: str | int) -> str:
    """A file-name stem for the outputs of ``source``: ``camera0``, a URL's last path part (else its host), a
    file's stem."""
    if is_camera(source):
        return "camera" + re.sub(r"\D", "", str(source))
    if is_network(source):
        parts = urlsplit(source)
        stem = Path(parts.path).stem or parts.hostname or "stream"
        return re.sub(r"[^\w.-]", "_", stem)
    return Path(str(source).rstrip("/\\")).stem


def open_camera(camera: str | int, *, size: tuple[int, int] | None = None,
                stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> StreamFrames:
    """Camera ``N`` or ``/dev/videoN``: V4L2 on Linux, AVFoundation (by number) on macOS. ``size``: ask the camera
    for W x H (else its default mode)."""
    options = {"video_size": f"{size[0]}x{size[1]}"} if size else {}
    number = int(re.sub(r"\D", "", str(camera)))
    if sys.platform.startswith("linux"):
        device = str(camera) if isinstance(camera, str) else f"/dev/video{number}"
        if not os.path.exists(device):
            raise FrameError(f"camera {device} not found (the cameras here: `ls /dev/video*`)")
        return StreamFrames(device, name=device, live=True, format="v4l2", options=options,
                            stall_timeout=stall_timeout)
    if sys.platform == "darwin":
        options.setdefault("framerate", "30")  # AVFoundation refuses to open without a rate the camera supports
        return StreamFrames(f"{number}:none", name=f"camera {number}", live=True, format="avfoundation",
                            options=options, stall_timeout=stall_timeout)
    raise FrameError(f"camera {camera}: cameras are read through V4L2 (Linux) and AVFoundation (macOS); on "
                     f"{sys.platform}, stream the camera over RTSP or HTTP and give that URL")


def open_source(source: str | int | os.PathLike, *, stall_timeout: float = DEFAULT_STALL_TIMEOUT,
                camera_size: tuple[int, int] | None = None) -> FrameSource:
    """The frames of ``source``: a camera number or ``/dev/videoN`` path, an ``rtsp://`` / ``http(s)://`` URL, or
    a video file, frame folder or image list (:func:`~lorat_plugin.data.video.open_frames`). Live sources
    (cameras, RTSP, HTTP streams without a duration) have ``live = True``; others ``False``."""
    if is_camera(source):
        return open_camera(source, size=camera_size, stall_timeout=stall_timeout)
    if is_network(str(source)):
        url = str(source)
        scheme = urlsplit(url).scheme.lower()
        options = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else {}  # UDP loses packets through NAT
        return StreamFrames(url, name=url, live=True if scheme.startswith("rtsp") else None, options=options,
                            stall_timeout=stall_timeout)
    return open_frames(source)


class NewestFrames:
    """Iterate ``source`` on a reader thread and yield only the newest frame each time the caller asks.

    A frame that the next one replaces before the caller took it is dropped (:attr:`dropped`); the first frame is
    never dropped (the init boxes belong to it). ``pace_fps``: deliver frame ``n`` no earlier than ``n / pace_fps``
    seconds after the start, as a camera would (for files, which decode faster than real time).

    During the iteration :attr:`frame_number` (1-based, counting every frame the source delivered) and
    :attr:`arrived` (``time.perf_counter()`` when the reader got it) describe the frame last yielded. The iteration
    ends when the source ends or fails, or delivers nothing for ``stall_timeout`` seconds; :attr:`end` says which.
    """

    def __init__(self, source: Iterable[np.ndarray], *, stall_timeout: float = DEFAULT_STALL_TIMEOUT,
                 pace_fps: float | None = None) -> None:
        self.source = source
        self.stall_timeout = float(stall_timeout)
        self.pace_fps = pace_fps if pace_fps and pace_fps > 0 else None
        self.delivered = 0  # frames the source gave the reader
        self.processed = 0  # frames yielded
        self.frame_number = 0
        self.arrived = 0.0
        self.end: str | None = None
        self.failed = False  # stalled or failed, as opposed to ended
        self._newest: tuple[np.ndarray, int, float] | None = None
        self._finished = False
        self._error: BaseException | None = None
        self._last_arrival = 0.0
        self._stop = threading.Event()
        self._changed = threading.Condition()

    @property
    def dropped(self) -> int:
        """Frames the source delivered that were never yielded."""
        return self.delivered - self.processed

    def _read(self) -> None:
        started = time.perf_counter()
        frames = iter(self.source)
        try:
            for index, frame in enumerate(frames):
                if self.pace_fps is not None:
                    delay = started + index / self.pace_fps - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                with self._changed:
                    while index == 1 and self._newest is not None and not self._stop.is_set():
                        self._changed.wait()  # the first frame waits to be taken
                    if self._stop.is_set():
                        break
                    self._newest = (frame, index + 1, time.perf_counter())
                    self._last_arrival = self._newest[2]
                    self.delivered += 1
                    self._changed.notify_all()
        except BaseException as e:  # reported by the consumer, in its thread
            self._error = e
        finally:
            close = getattr(frames, "close", None)  # a generator: runs its clean-up (a stream closes its connection)
            if close is not None:
                close()
            with self._changed:
                self._finished = True
                self._changed.notify_all()

    def __iter__(self) -> Iterator[np.ndarray]:
        reader = threading.Thread(target=self._read, name="frame reader", daemon=True)
        self._last_arrival = time.perf_counter()
        reader.start()
        try:
            while True:
                with self._changed:
                    while self._newest is None and not self._finished:
                        left = self._last_arrival + self.stall_timeout - time.perf_counter()
                        if left <= 0:
                            break
                        self._changed.wait(left)
                    taken, self._newest = self._newest, None
                    self._changed.notify_all()
                    if taken is None:
                        self._set_end()
                        return
                frame, self.frame_number, self.arrived = taken
                self.processed += 1
                yield frame
        finally:
            self._stop.set()
            with self._changed:
                self._changed.notify_all()
            reader.join(timeout=1.0)  # a read blocked inside FFmpeg ends with its own timeout; the thread is a daemon

    def _set_end(self) -> None:
        if not self._finished:
            self.end, self.failed = f"no frame for {self.stall_timeout:g} s: the source stalled", True
        elif self._error is not None:
            self.end, self.failed = f"the source failed: {self._error}", True
        else:
            self.end = "the source ended"


def latency_summary(latencies_s: Iterable[float]) -> str:
    """``latency p50 12.3 ms, p95 20.1 ms`` (from arrival to the boxes being written)."""
    values = np.asarray(list(latencies_s), dtype=np.float64) * 1000.0
    if values.size == 0:
        return "latency: no frames"
    p50, p95 = np.percentile(values, (50, 95))
    return f"latency p50 {p50:.1f} ms, p95 {p95:.1f} ms"


__all__ = ["StreamFrames", "NewestFrames", "open_source", "open_camera", "source_stem", "is_camera", "is_network",
           "latency_summary", "DEFAULT_STALL_TIMEOUT"]
