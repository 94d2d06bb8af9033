"""Frames the page shows, by number: decoded once, kept as JPEG (a video is never held decoded in memory).

The tracker never sees these JPEGs: it decodes the source itself (:meth:`FrameStore.iterate_from`), so its boxes are
the ones ``lorat track`` gets on the same input.
"""
from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..data.video import FrameSource, ImageFiles

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

    def __len__(self) -> int:
        return len(self._jpegs)

    @property
    def expected(self) -> int:
        """The frame count the source declares (0 when unknown), or the count decoded once complete."""
        if self.complete or self.source is None:
            return len(self._jpegs)
        return max(len(self.source), len(self._jpegs))

    def decode_in_background(self) -> None:
        threading.Thread(target=self._decode_all, name=f"frames {self.name}", daemon=True).start()

    def _decode_all(self) -> None:
        try:
            for frame in self.source:
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
        """The source's frames from number ``start`` on, decoded from the source (files only)."""
        source = self.source
        if isinstance(source, ImageFiles):
            yield from ImageFiles(source.files[start:], source.path)
            return
        for index, frame in enumerate(source):
            if index >= start:
                yield frame


def path_store(path: Path, display_name: str, opener: Callable[[Path], FrameSource]) -> FrameStore:
    """A store of the video, frame folder or image list at ``path``, decoding in the background."""
    store = FrameStore(display_name, opener(path))
    store.decode_in_background()
    return store
