"""A synthetic video with exact ground truth: the moving target of tests, speed measurement and the GPU check."""
from __future__ import annotations

from typing import Sequence

import numpy as np

RED = (230, 30, 30)


def moving_box_video(frames: int, size: tuple[int, int] = (160, 120), *, box: Sequence[float] | None = None,
                     step: tuple[float, float] = (2.0, 1.0), growth: tuple[float, float] = (0.0, 0.0),
                     seed: int = 0, textured: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """``frames`` H x W x 3 uint8 frames of a red target (x, y, w, h ``box`` at frame 0; by default an eighth of
    the frame wide, placed by ``seed``) moving ``step`` px and growing ``growth`` px per frame (rounded down) over
    a fixed blue noise background (nothing in it is red or green), and its exact 0-based x, y, w, h boxes
    (of the part inside the frame).
    ``textured``: only the target's centre is red, inside a random texture (correlation filters need one)."""
    rng = np.random.default_rng(seed)
    width, height = size
    if box is None:
        box = (rng.uniform(0.1, 0.3) * width, rng.uniform(0.1, 0.3) * height, width / 8, height / 6)
    background = np.zeros((height, width, 3), np.uint8)
    background[..., 2] = rng.integers(60, 200, (height, width))
    texture = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    images, boxes = [], []
    for i in range(frames):
        x, y, w, h = np.floor(np.add(box, np.multiply(i, (*step, *growth))))
        x0, y0, x1, y1 = (int(v) for v in (max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"frame {i}: the target {(x, y, w, h)} is outside the {width}x{height} frame")
        w, h = x1 - x0, y1 - y0  # the part inside the frame: the ground truth
        image = background.copy()
        image[y0:y1, x0:x1] = texture[:h, :w] if textured else RED
        if textured:
            image[y0 + h // 4:y1 - h // 4, x0 + w // 4:x1 - w // 4] = RED
        images.append(image)
        boxes.append((x0, y0, w, h))
    return images, np.array(boxes, dtype=np.float64)


def moving_box_videos(count: int, frames: int, size: tuple[int, int]) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """``count`` videos of :func:`moving_box_video` (seeds 0, 1, ...) and their init boxes, to track as a batch."""
    videos = [moving_box_video(frames, size, seed=seed) for seed in range(count)]
    return [images for images, _ in videos], np.stack([truth[0] for _, truth in videos])
