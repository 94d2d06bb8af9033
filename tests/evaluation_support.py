"""Small batch trackers and benchmark builders for the dataset and evaluation tests (imported by those tests and
by the torchrun worker script they launch)."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lorat_plugin.data.datasets.write import SequenceData, write_dataset


def generated_sequence(name: str, length: int, *, size: tuple[int, int] = (64, 48), seed: int = 0,
                       hidden: Iterable[int] = (), attributes: dict | None = None) -> SequenceData:
    """A small synthetic sequence: a bright box drifting over a noisy grey background (frames ``hidden`` have no
    target). Deterministic in ``seed``; for smoke tests of readers, writers and the evaluation harness."""
    rng = np.random.default_rng(seed)
    width, height = size
    background = rng.integers(60, 140, size=(height, width, 3), dtype=np.uint8)
    w0, h0 = rng.uniform(0.2, 0.35) * width, rng.uniform(0.25, 0.4) * height
    x0, y0 = rng.uniform(0, width - w0 * 1.2), rng.uniform(0, height - h0 * 1.2)
    velocity = rng.uniform(-1.5, 1.5, size=2)
    hidden = set(hidden)
    images, boxes = [], []
    for t in range(length):
        scale = 1.0 + 0.1 * np.sin(t / 5.0)
        w, h = w0 * scale, h0 * scale
        x = float(np.clip(x0 + velocity[0] * t, 0, width - w))
        y = float(np.clip(y0 + velocity[1] * t, 0, height - h))
        image = background.copy()
        if t not in hidden:
            image[int(round(y)):int(round(y + h)), int(round(x)):int(round(x + w))] = (235, 235, 60)
        images.append(image)
        boxes.append((x, y, w, h))
    visible = np.array([t not in hidden for t in range(length)])
    return SequenceData(name, images, np.array(boxes), visible, dict(attributes or {}))


class BrightBoxTracker:
    """A real, if trivial, batch tracker for the generated sequences: the box is the bounding box of the bright
    yellow pixels, shifted by ``offset`` px; when there are none it keeps the previous box (score 0).

    Its output depends only on the frames of one sequence, never on which sequences share a batch, so any batching,
    sharding or resuming must give the same boxes. ``fail_after_init`` raises on that initialize call (1-based):
    a deterministic stand-in for a killed run.
    """

    def __init__(self, offset: float = 0.5, fail_after_init: int | None = None):
        self.offset = offset
        self.fail_after_init = fail_after_init
        self.init_calls = 0
        self.batch_sizes: list[int] = []

    def initialize(self, frames, boxes):
        self.init_calls += 1
        if self.fail_after_init is not None and self.init_calls >= self.fail_after_init:
            raise KeyboardInterrupt("simulated kill")
        self.batch_sizes.append(len(frames))
        return [{"box": np.asarray(b, dtype=np.float64)} for b in boxes]

    def track(self, states, frames):
        self.batch_sizes.append(len(frames))
        boxes, scores = [], []
        for state, frame in zip(states, frames):
            mask = (frame[:, :, 0] > 180) & (frame[:, :, 1] > 180) & (frame[:, :, 2] < 130)
            if mask.any():
                ys, xs = np.nonzero(mask)
                box = np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], float)
                box[:2] += self.offset
                score = float(mask.mean())
            else:
                box, score = state["box"], 0.0
            state["box"] = box
            boxes.append(box)
            scores.append(score)
        return np.array(boxes), np.array(scores)


def make_benchmark(root: Path, dataset: str, count: int = 3, length: int = 12, *, split: str | None = None,
                   names: list[str] | None = None, hidden: tuple[int, ...] = (4,), size=(64, 48)) -> Path:
    """``count`` generated sequences of different lengths in ``dataset``'s layout under ``root``."""
    if names is None:
        names = {"got10k": [f"GOT-10k_{'Test' if split == 'test' else 'Val'}_{i:06d}" for i in range(1, count + 1)],
                 "lasot": [f"{c}-{k}" for c, k in zip(["cat", "cat", "dog", "dog"], [1, 2, 1, 10])][:count],
                 "trackingnet": [f"seq{i}_{i}" for i in range(count)],
                 "otb": ["Basketball", "Bolt", "Boy", "Car4"][:count]}.get(dataset) or [f"s{i}" for i in range(count)]
    sequences = []
    for i, name in enumerate(names):
        challenges = {"IV": i % 2 == 0, "POC": True, "FM": i == 1} if dataset == "lasot" else None
        sequences.append(generated_sequence(name, length + 3 * i, seed=10 + i, hidden=hidden, size=size,
                                            attributes={"challenges": challenges} if challenges else None))
    return write_dataset(root, dataset, sequences, split=split)
