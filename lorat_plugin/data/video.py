"""Frame sources (video files, frame folders, image lists) and writers (MP4/AVI/... video, GIF) with boxes drawn.

Sources yield H x W x 3 uint8 RGB arrays one at a time, so a long video is never held in memory. A frame that
cannot be read raises :class:`~lorat_plugin.data.FrameError` naming the file (and the frame number for videos).
Videos are decoded with PyAV (FFmpeg); install the ``video`` extra (``pip install lorat-plugin[video]``).
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Generator, Iterator, NamedTuple, Sequence

import numpy as np

from .annotations import natural_key
from .sequence import FrameError, read_image

if TYPE_CHECKING:  # PyAV is optional (the video extra): imported where a video is read
    import av

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
LIST_EXTENSIONS = (".txt", ".lst", ".list")
log = logging.getLogger(__name__)


class FrameSource:
    """An iterable of frames. ``len()`` is the number of frames (a video's container estimate, 0 if unknown);
    ``fps`` the frame rate when the source knows one; ``live``: frames come in real time (a camera, a stream:
    ``lorat_plugin.data.live``)."""

    path: Path
    fps: float | None = None
    live: bool = False

    @property
    def name(self) -> str:
        """How messages and progress bars name the source."""
        return self.path.name
    decode_errors: int = 0  # errors the video decoder reported (and concealed) in the last iteration

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class ImageFiles(FrameSource):
    """Frames stored as image files, in the given order; ``path`` is the folder or list they came from."""

    def __init__(self, files: Sequence[str | os.PathLike], path: str | os.PathLike) -> None:
        self.files = [Path(f) for f in files]
        self.path = Path(path)

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        for file in self.files:
            yield read_image(file)  # FrameError names the file


class FrameMark(NamedTuple):
    """One decoded frame of a video, as :class:`SeekIndex` records it."""

    timestamp: int | None  # presentation timestamp, in the stream's time base; None when the container gives none
    keyframe: bool
    checksum: int  # CRC-32 of the RGB pixels

    def matches(self, timestamp: int | None, image: np.ndarray) -> bool:
        return timestamp == self.timestamp and zlib.crc32(image) == self.checksum


class SeekIndex:
    """What :meth:`VideoFrames.frames_from` needs to seek in one video, recorded frame by frame by a decode from the
    first frame (:meth:`VideoFrames.frames`). One thread may record while others read: entries are only appended."""

    def __init__(self) -> None:
        self.marks: list[FrameMark] = []
        self._keyframes: dict[int, int] = {}  # a keyframe's timestamp -> its frame number
        # Seeking needs timestamps that name one frame each: a frame without one, or one not after the previous
        # frame's, turns seeking off for this video (decodes then start from the first frame).
        self.seekable = True

    def __len__(self) -> int:
        return len(self.marks)

    def add(self, timestamp: int | None, keyframe: bool, image: np.ndarray) -> None:
        previous = self.marks[-1].timestamp if self.marks else None
        if timestamp is None or (previous is not None and timestamp <= previous):
            self.seekable = False
        if keyframe and timestamp is not None:
            self._keyframes[timestamp] = len(self.marks)
        self.marks.append(FrameMark(timestamp, keyframe, zlib.crc32(image)))

    def keyframe_number(self, timestamp: int | None) -> int | None:
        """The number of the recorded keyframe with this timestamp, if there is one."""
        return None if timestamp is None else self._keyframes.get(timestamp)

    def last_keyframe_at_or_before(self, number: int) -> int | None:
        return next((n for n in range(number, -1, -1) if self.marks[n].keyframe), None)


class VideoFrames(FrameSource):
    """A video file decoded with PyAV (every frame, in presentation order)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        av = _import_av()
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError, ValueError) as e:  # a missing file too (open_frames checks that first)
            raise FrameError(f"cannot open video {self.path}: {e}") from e
        with container:
            if not container.streams.video:
                raise FrameError(f"{self.path} has no video stream")
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate) if stream.average_rate else None
            # mp4/avi declare a frame count; mkv/webm only a duration
            self._frames = int(stream.frames or 0) or round((container.duration or 0) / av.time_base * (self.fps or 0))

    def __len__(self) -> int:
        return self._frames

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, index: SeekIndex | None = None) -> Iterator[np.ndarray]:
        """Decode every frame; ``index``: record in it each frame's timestamp, keyframe flag and checksum, for
        :meth:`frames_from`. Damage the decoder conceals (it fills broken blocks from their neighbours and returns
        the frame without an error) is counted from the errors libav logs: ``decode_errors`` after the iteration,
        and one warning per video naming the count."""
        av = _import_av()
        number = 0
        self.decode_errors = 0
        errors: list[str] = []
        try:
            with av.open(str(self.path)) as container:
                for frame, image in _decoded_frames(container, errors):
                    self.decode_errors = len(errors)
                    if index is not None:
                        index.add(frame.pts, frame.key_frame, image)
                    yield image
                    number += 1
                self.decode_errors = len(errors)  # the decoder's flush may report some too
        except (av.FFmpegError, OSError, ValueError) as e:
            raise FrameError(f"cannot decode {self.path} at frame {number}: {e}") from e
        finally:
            if self.decode_errors:
                log.warning("%s: the decoder reported %d errors in %d frames (damaged data; it conceals them, so the "
                            "frames may differ from the original; first: %s)",
                            self.path, self.decode_errors, number, errors[0])
        if number < self._frames:  # a truncated file decodes without an error
            log.warning("%s: the container declares %d frames but only %d could be decoded (truncated?)",
                        self.path, self._frames, number)

    def frames_from(self, start: int, index: SeekIndex) -> Iterator[np.ndarray]:
        """The frames from number ``start`` on: exactly those :meth:`frames` gives from there. Where ``index`` (being
        recorded by :meth:`frames`) has reached ``start``, the decoder starts at the last keyframe at or before it
        instead of the first frame, and every frame it gives that the index holds is checked against it (timestamp
        and checksum). Anything else decodes from the first frame: a frame not recorded yet, a video without usable
        timestamps, a seek that lands after the keyframe, a frame that differs from the recorded one."""
        resume = start
        if start < len(index) and index.seekable:
            keyframe = index.last_keyframe_at_or_before(start)
            # An MPEG-TS seek lands on the first keyframe after the timestamp sought: seeking the keyframe before
            # then lands on this one. (Starting at the first frame needs no seek.)
            tries = [keyframe, index.last_keyframe_at_or_before(keyframe - 1)] if keyframe else []
            for keyframe in tries:
                if keyframe is None:
                    break
                resume = yield from self._frames_after_seek(start, index, keyframe)
                if resume != start:  # the frames from start on came (all or some) from this seek
                    break
        if resume is not None:
            yield from itertools.islice(self.frames(), resume, None)

    def _frames_after_seek(self, start: int, index: SeekIndex, keyframe: int
                           ) -> Generator[np.ndarray, None, int | None]:
        """Yield the frames from ``start`` on, decoded from a seek to the recorded frame ``keyframe``; return
        ``None`` at the video's end, or the number of the frame from which a decode from the first frame must go on
        (``start`` when none came)."""
        marks = index.marks
        av = _import_av()
        number: int | None = None  # of the frame just decoded, once the decoder is at a recorded keyframe
        try:
            with av.open(str(self.path)) as container:
                container.seek(marks[keyframe].timestamp, stream=container.streams.video[0])  # at or before it
                for frame, image in _decoded_frames(container, errors=[]):
                    if number is None:
                        # Frames shown before the keyframe come first after a seek in an open GOP; a seek may also
                        # land on an earlier keyframe, which is as good (decoding goes on from there).
                        landed = index.keyframe_number(frame.pts)
                        if landed is None or landed > start:
                            if frame.pts is None or frame.pts >= marks[start].timestamp:
                                return start  # the seek landed past the keyframe
                            continue
                        number = landed
                    if number < len(marks) and not marks[number].matches(frame.pts, image):
                        return max(number, start)
                    if number >= start:
                        yield image
                    number += 1
        except (av.FFmpegError, OSError, ValueError):  # a decode from the first frame reports it with its number
            return start if number is None else max(number, start)
        if number is None:
            return start
        if number < len(marks):  # the seek gave fewer frames than the decode from the first frame
            return max(number, start)
        return None


def rgb_pixels(frame: av.VideoFrame) -> np.ndarray:
    """The frame's pixels as one C-contiguous H x W x 3 uint8 array. PyAV 18.1.1 returns a view of the decoder's
    padded rows (each row ``linesize`` bytes apart) where earlier releases copied; the frame checksums, the crops and
    OpenCV all want the rows packed."""
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


def _decoded_frames(container: av.container.InputContainer, errors: list[str]
                    ) -> Iterator[tuple[av.VideoFrame, np.ndarray]]:
    """The frames of the first video stream from where ``container`` stands (its start, or where it was sought to),
    each with its RGB pixels; appends the errors libav logs meanwhile to ``errors``."""
    stream = container.streams.video[0]
    # One decoding thread: libav logs a decoder's errors from the thread that meets them, and PyAV captures only the
    # calling thread's logs; capturing every thread's deadlocks with frame threading (a worker waits for the
    # interpreter while the caller waits for the worker).
    stream.thread_count = 1
    frames = container.decode(stream)
    while True:
        with _decoder_errors() as logged:
            frame = next(frames, None)
            image = None if frame is None else rgb_pixels(frame)
        errors.extend(logged)
        if frame is None:
            return
        yield frame, image


def open_frames(path: str | os.PathLike) -> FrameSource:
    """A video file, a folder of images (sorted naturally: 2 before 10) or a text file listing image paths
    (one per line, relative to the list's folder; blank lines and ``#`` comments ignored)."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                       key=lambda p: natural_key(p.name.lower()))
        if not files:
            raise FrameError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        _refuse_gaps(files, path)
        return ImageFiles(files, path)
    if not path.exists():
        raise FrameError(f"input not found: {path}")
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return VideoFrames(path)
    if suffix in LIST_EXTENSIONS:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        files = [path.parent / Path(line).expanduser() for line in lines if line and not line.startswith("#")]
        if not files:
            raise FrameError(f"image list {path} names no images")
        return ImageFiles(files, path)
    if suffix in IMAGE_EXTENSIONS:
        raise FrameError(f"{path} is a single image: give its folder, an image list (.txt) or a video")
    return VideoFrames(path)  # let FFmpeg try unknown containers; FrameError if it cannot


def _refuse_gaps(files: list[Path], folder: Path) -> None:
    """One numbered series (``00000001.jpg`` ...) with a gap or a repeated number would give every later box the
    wrong frame number: a FrameError naming the missing frame. An image list (.txt) tracks any files given."""
    series = [re.fullmatch(r"(.*?)(\d+)(\.\w+)", file.name) for file in files]
    if not all(series) or len({(m[1], m[3]) for m in series}) != 1:
        return  # names that are not one numbered series: nothing to check
    for m, n in zip(series, series[1:]):
        if int(n[2]) != int(m[2]) + 1:
            what = (f"frame {m[1]}{int(m[2]) + 1:0{len(m[2])}d}{m[3]} is missing" if int(n[2]) > int(m[2])
                    else f"{m[0]} and {n[0]} have the same number")
            raise FrameError(f"{folder}: {what} from the numbered frames {series[0][0]}..{series[-1][0]}; list the "
                             "frames to track in a .txt file to track them anyway")


def draw_boxes(frame: np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray,
               colors: Sequence[tuple[int, int, int]] | None = None, labels: Sequence[str | None] | None = None,
               thickness: int | None = None) -> np.ndarray:
    """A copy of ``frame`` (H x W x 3 uint8) with rectangles (x, y, w, h) drawn; non-finite boxes are skipped."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    height, width = frame.shape[:2]
    thickness = thickness or max(2, round(min(height, width) / 160))
    colors = colors or [(0, 255, 0)] * len(boxes)
    labels = labels or [None] * len(boxes)
    for box, color, label in zip(boxes, colors, labels):
        x, y, w, h = (float(v) for v in box)
        if not all(np.isfinite((x, y, w, h))):
            continue
        draw.rectangle((x, y, x + max(w, 1.0) - 1, y + max(h, 1.0) - 1), outline=tuple(color), width=thickness)
        if label:
            left, top, right, bottom = draw.textbbox((0, 0), label)
            text_y = y - (bottom - top) - 4 if y - (bottom - top) - 4 >= 0 else y + thickness
            draw.rectangle((x, text_y, x + right - left + 4, text_y + bottom - top + 4), fill=tuple(color))
            draw.text((x + 2, text_y + 2 - top), label, fill=(0, 0, 0))
    return np.asarray(image)


class VideoWriter:
    """Write frames to a video (``.mp4``, ``.mkv``, ``.mov``: H.264; ``.avi``: MPEG-4 part 2) or an animated
    ``.gif``. The file appears only when the writer is closed without error (written to a temporary name first).
    GIF frames are palette-quantised and kept in memory until closing (about one byte per pixel): meant for short
    clips. Videos are streamed to disk."""

    def __init__(self, path: str | os.PathLike, fps: float = 25.0) -> None:
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        suffix = self.path.suffix.lower()
        if suffix != ".gif" and suffix not in VIDEO_EXTENSIONS:
            raise ValueError(f"cannot write {self.path}: use a .gif or a video extension "
                             f"({', '.join(VIDEO_EXTENSIONS)})")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # hidden, same extension (the encoder picks the format from it); the next run overwrites what a killed one left
        self._temp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._gif_frames: list = []
        self._container = None
        self._stream = None

    def write(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self.path.suffix.lower() == ".gif":
            from PIL import Image
            self._gif_frames.append(Image.fromarray(frame).quantize(colors=255, dither=Image.Dither.NONE))
        else:
            self._write_video(frame)

    def _write_video(self, frame: np.ndarray) -> None:
        av = _import_av()
        height, width = frame.shape[:2]
        if self._stream is None:
            from fractions import Fraction
            self._container = av.open(str(self._temp), mode="w")
            codec = "mpeg4" if self.path.suffix.lower() == ".avi" else "libx264"
            self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            # yuv420p needs even sizes: frames are padded by one pixel where needed.
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self._stream.options = {"crf": "20", "preset": "veryfast"}
        rows, columns = self._stream.height, self._stream.width
        if (height, width) != (rows, columns):
            frame = np.pad(frame[:rows, :columns], ((0, max(rows - height, 0)), (0, max(columns - width, 0)), (0, 0)))
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)

    def close(self) -> None:
        """Finish the file and move it into place."""
        try:
            if not self._gif_frames and self._stream is None:
                raise ValueError(f"no frames were written to {self.path}")
            if self._gif_frames:
                first, *rest = self._gif_frames
                first.save(self._temp, save_all=True, append_images=rest, duration=round(1000 / self.fps), loop=0)
            else:
                for packet in self._stream.encode():
                    self._container.mux(packet)
                self._container.close()
            os.replace(self._temp, self.path)
        finally:
            self.abort()  # releases the encoder; the partial file is already gone after the move

    def abort(self) -> None:
        """Drop the partial file (called on errors)."""
        if self._container is not None:
            with contextlib.suppress(Exception):  # already closed or broken: nothing left to flush
                self._container.close()
            self._container = None
        self._gif_frames = []
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames, fps: float = 25.0) -> Path:
    """Write an iterable of frames to ``path`` (see :class:`VideoWriter`)."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


@contextlib.contextmanager
def _decoder_errors() -> Iterator[list[str]]:
    """The error messages libav logs in this thread within the block (PyAV logs nothing unless a level is set).

    The level is raised to ERROR only for the block and set back after it: PyAV's logging is process-wide, and
    logs that other threads (an encoder's) send through it while the interpreter waits for them can deadlock.
    """
    av = _import_av()
    import av.logging

    before = av.logging.get_level()
    if before is None or before < av.logging.ERROR:  # (smaller is more severe)
        av.logging.set_level(av.logging.ERROR)
    errors: list[str] = []
    try:
        with av.logging.Capture(local=True) as logs:
            yield errors
    finally:
        av.logging.set_level(before)
        errors.extend(f"[{name}] {message.strip()}" for level, name, message in logs if level <= av.logging.ERROR)


def _import_av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError("reading and writing videos needs PyAV: pip install 'lorat-plugin[video]'") from e
    return av


__all__ = ["FrameSource", "ImageFiles", "VideoFrames", "SeekIndex", "open_frames",
           "draw_boxes", "VideoWriter", "write_video", "VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS"]
