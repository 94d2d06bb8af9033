"""Generated training/evaluation data for the training tests: textured objects moving over cluttered backgrounds,
written in the GOT-10k layout with PIL (through the package's dataset writer)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lorat_plugin.data.datasets.write import SequenceData, write_dataset


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    from PIL import Image

    small = rng.integers(40, 200, size=(cells, cells, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


class _Mover:
    """A random 4x4 colour-checker patch bouncing around the frame with a slow scale change."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, phase: float) -> None:
        self.texture = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        self.w0, self.h0 = rng.uniform(0.12, 0.3) * width, rng.uniform(0.12, 0.3) * height
        self.x, self.y = rng.uniform(0, width - self.w0), rng.uniform(0, height - self.h0)
        self.vx, self.vy = rng.uniform(-0.04, 0.04, size=2) * (width, height)
        self.width, self.height, self.phase = width, height, phase

    def step(self, t: int) -> tuple[int, int, int, int]:
        scale = 1.0 + 0.15 * np.sin(t / 7.0 + self.phase)
        w, h = self.w0 * scale, self.h0 * scale
        if not 0 <= self.x + self.vx <= self.width - w:
            self.vx = -self.vx
        if not 0 <= self.y + self.vy <= self.height - h:
            self.vy = -self.vy
        self.x = float(np.clip(self.x + self.vx, 0, self.width - w))
        self.y = float(np.clip(self.y + self.vy, 0, self.height - h))
        return int(round(self.x)), int(round(self.y)), int(round(self.x + w)), int(round(self.y + h))

    def draw(self, image: np.ndarray, box: tuple[int, int, int, int]) -> None:
        x1, y1, x2, y2 = box
        cell = (int(np.ceil((y2 - y1) / 4)), int(np.ceil((x2 - x1) / 4)), 1)
        image[y1:y2, x1:x2] = np.kron(self.texture, np.ones(cell, np.uint8))[:y2 - y1, :x2 - x1]


def moving_object_sequence(name: str, length: int, size: tuple[int, int], seed: int,
                           distractors: int = 0) -> SequenceData:
    """The target (drawn on top) and ``distractors`` other patches drifting over smooth clutter."""
    rng = np.random.default_rng(seed)
    width, height = size
    background = _smooth_noise(rng, height, width, 6)
    target = _Mover(rng, width, height, seed)
    others = [_Mover(rng, width, height, seed + k + 1) for k in range(distractors)]
    images, boxes = [], []
    for t in range(length):
        image = background.copy()
        for other in others:
            other.draw(image, other.step(t))
        box = target.step(t)
        target.draw(image, box)
        images.append(image)
        boxes.append((box[0], box[1], box[2] - box[0], box[3] - box[1]))
    return SequenceData(name, images, np.asarray(boxes, dtype=np.float64))


def write_moving_objects(root: Path, split: str, count: int, *, length: int = 12, size: tuple[int, int] = (96, 72),
                         seed: int = 0, prefix: str = "GOT-10k_Train", distractors: int = 0) -> Path:
    sequences = [moving_object_sequence(f"{prefix}_{i + 1:06d}", length, size, seed * 1000 + i, distractors)
                 for i in range(count)]
    return write_dataset(root, "got10k", sequences, split=split)
