"""The one sequence type shared by evaluation, training and the trackers, and frame decoding.

Boxes everywhere inside lorat-plugin are ``x, y, w, h`` in continuous, 0-based pixel coordinates (the reference's
convention). Readers convert from each benchmark's file convention (LaSOT/OTB files are 1-based) and writers
convert back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class FrameError(OSError):
    """A frame that is missing or cannot be decoded; the message names the file."""


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and the line."""


@dataclass
class Sequence:
    """One target in one video.

    ``boxes`` is N x 4 (NaN rows where the box is unknown, e.g. every frame but the first of a test split),
    ``visible`` is N booleans (False where the target is absent, fully occluded or out of view), and
    ``attributes`` holds per-sequence metadata (class, challenge attributes, per-frame labels of the benchmark).
    """

    name: str
    frames: list[Path]
    boxes: np.ndarray
    visible: np.ndarray | None = None
    dataset: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if self.visible is None:
            self.visible = np.all(np.isfinite(self.boxes), axis=1) & np.all(self.boxes[:, 2:] > 0, axis=1)
        self.visible = np.asarray(self.visible, dtype=bool)
        if len(self.boxes) != len(self.frames) or len(self.visible) != len(self.frames):
            raise AnnotationError(f"sequence {self.name}: {len(self.frames)} frames but {len(self.boxes)} boxes and "
                                  f"{len(self.visible)} visibility flags")

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, index: int) -> np.ndarray:
        return read_image(self.frames[index])


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to H x W x 3 uint8 RGB (grayscale, RGBA and 16-bit images: see :func:`to_rgb`)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except FileNotFoundError as e:
        raise FrameError(f"frame not found: {path}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise FrameError(f"cannot decode frame {path}: {e}") from e


def to_rgb(image: Any) -> np.ndarray:
    """PIL images or arrays (H x W gray, H x W x 1, RGB, RGBA) to a contiguous H x W x 3 uint8 RGB array.
    A bool mask, NaN or an integer array outside its type's rule below is a ValueError, never a clipped frame."""
    if hasattr(image, "convert"):  # a PIL image: 16-bit ("I;16*"; "I" from a PNG in older Pillow), 32-bit and
        # float modes go through the rules below, as PIL's own conversion to RGB clips them
        if image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG"):
            image = np.asarray(image).astype(np.uint16)
        elif image.mode not in ("RGB", "L", "RGBA", "I", "F"):
            image = image.convert("RGB")
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) == 0:
        raise ValueError(f"expected an H x W, H x W x 1, x 3 or x 4 image, got shape {image.shape}")
    if image.dtype.kind == "u" and image.dtype.itemsize == 2:  # 16-bit: v / 257 rounded (inverts v8 * 257)
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype.kind in "iu" and image.dtype != np.uint8:  # 8-bit values in a wider type, e.g. numpy's int64
        if image.min() < 0 or image.max() > 255:
            raise ValueError(f"{image.dtype} image with values outside 0..255 ({image.min()}..{image.max()}): "
                             "give uint8, uint16 (scaled by 1/257) or float (0..1 or 0..255)")
        image = image.astype(np.uint8)
    elif image.dtype.kind == "f":  # 0..1 if no value exceeds 1, else 0..255 (clipped)
        if not np.isfinite(image).all():
            raise ValueError("float image with NaN or infinite values")
        image = np.clip(image * 255.0 if image.max() <= 1.0 else image, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:  # bool masks, complex, objects: no image
        raise ValueError(f"a {image.dtype} array is no image: give uint8, uint16 or float values")
    return np.ascontiguousarray(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3])
