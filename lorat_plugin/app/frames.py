"""Frames the page shows, by number: decoded once, kept as JPEG (a video is never held decoded in memory).

The tracker never sees these JPEGs: it decodes the source itself (:meth:`FrameStore.iterate_from`), so its boxes are
the ones ``lorat track`` gets on the same input. A camera or stream (:class:`LiveStore`) cannot be rewound: it keeps
its newest frame decoded, and the tracker takes the newest frame each time it is ready (``lorat track``'s real-time
mode, ``data.live.NewestFrames``).
"""
from __future__ import annotations

import contextlib
import io
import threading
from typing import Iterator

import numpy as np

from ..data.video import FrameSource, ImageFiles, SeekIndex, VideoFrames

JPEG_QUALITY = 90


def encode_jpeg(frame: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


class FrameStore:
    """The frames of one source as JPEG bytes, filled by a background decoding pass (files) or as frames arrive
    (cameras and streams, :meth:`append`). ``complete`` once the source has ended."""

    def __init__(self, name: str, source: FrameSource | None = None, fps: float | None = None) -> None:
        self.name = name
        self.source = source
        self.fps = fps or (source.fps if source is not None else None) or 25.0
        self.size: tuple[int, int] | None = None  # (W, H) of the first frame
        self.error: str | None = None
        self.complete = False
        self._jpegs: list[bytes] = []
        self._changed = threading.Condition()
        # filled by the background pass, so that tracking can start on a late frame without decoding the ones before
        self.seek_index = SeekIndex() if isinstance(source, VideoFrames) else None

    def __len__(self) -> int:
        return len(self._jpegs)

    live = False

    def number(self, index: int) -> int:
        """The 1-based frame number of stored frame ``index`` (a live source's own count: dropped frames count)."""
        return index + 1

    def close(self) -> None:
        """Release the source (a live one's connection; a file's decoder ends with its pass)."""

    @property
    def expected(self) -> int:
        """The frame count the source declares (0 when unknown), or the count decoded once complete."""
        if self.complete or self.source is None:
            return len(self._jpegs)
        return max(len(self.source), len(self._jpegs))

    def decode_in_background(self) -> None:
        threading.Thread(target=self._decode_all, name=f"frames {self.name}", daemon=True).start()

    def _decode_all(self) -> None:
        frames = self.source if self.seek_index is None else self.source.frames(self.seek_index)
        try:
            for frame in frames:
                self.append(frame)
        except (OSError, ValueError) as e:  # FrameError names the file and the frame
            self.error = str(e)
        finally:
            self.finish()

    def append(self, frame: np.ndarray) -> int:
        """Add the next frame; its number (0-based)."""
        jpeg = encode_jpeg(frame)
        with self._changed:
            if self.size is None:
                self.size = (int(frame.shape[1]), int(frame.shape[0]))
            self._jpegs.append(jpeg)
            self._changed.notify_all()
            return len(self._jpegs) - 1

    def finish(self) -> None:
        with self._changed:
            self.complete = True
            self._changed.notify_all()

    def jpeg(self, index: int, timeout: float = 30.0) -> bytes | None:
        """Frame ``index`` as JPEG, waiting for the decoder to reach it; ``None`` past the end."""
        with self._changed:
            self._changed.wait_for(lambda: index < len(self._jpegs) or self.complete, timeout)
            return self._jpegs[index] if index < len(self._jpegs) else None

    def wait_for_first(self, timeout: float = 30.0) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._jpegs or self.complete, timeout)
        if not self._jpegs:
            raise ValueError(f"{self.name}: {self.error or 'no frames'}")

    def iterate_from(self, start: int) -> Iterator[np.ndarray]:
        """The source's frames from number ``start`` on, decoded from the source (files only). A video starts at the
        keyframe before ``start`` once the background pass has passed ``start`` (the same frames as a decode from
        the first frame: ``VideoFrames.frames_from``)."""
        source = self.source
        if isinstance(source, ImageFiles):
            yield from ImageFiles(source.files[start:], source.path)
            return
        if isinstance(source, VideoFrames):
            yield from source.frames_from(start, self.seek_index)
            return
        for index, frame in enumerate(source):
            if index >= start:
                yield frame


class LiveStore(FrameStore):
    """A camera or stream: the first frame is stored at once (targets are drawn on it); tracking takes the newest
    frame each time (frames that arrive meanwhile are dropped, and counted) and stores it."""

    live = True

    def __init__(self, name: str, source: FrameSource) -> None:
        from ..data.live import NewestFrames

        super().__init__(name, None, fps=source.fps)
        self.newest = NewestFrames(source)
        self._frames = iter(self.newest)
        self._numbers: list[int] = []
        self._last: np.ndarray | None = None
        self._pull()

    def _pull(self) -> bool:
        frame = next(self._frames, None)
        if frame is None:
            self.error = self.newest.end if self.newest.failed else None
            self.finish()
            return False
        self._numbers.append(self.newest.frame_number)
        self._last = frame
        self.append(frame)
        return True

    def number(self, index: int) -> int:
        return self._numbers[index]

    def iterate_from(self, start: int) -> Iterator[np.ndarray]:
        """The newest stored frame (when ``start`` is its number), then each newest frame as it is taken."""
        if start < len(self) - 1:
            raise ValueError(f"{self.name} is live: only its newest frame ({len(self)}) can start or restart a target")
        if start == len(self) - 1:
            yield self._last
        while not self.complete and self._pull():
            yield self._last

    def close(self) -> None:
        with contextlib.suppress(Exception):  # ends the reader thread; the stream closes with it
            self._frames.close()
