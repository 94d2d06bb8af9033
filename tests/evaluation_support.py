"""Small batch trackers and benchmark builders for the dataset and evaluation tests (imported by those tests and
by the torchrun worker script they launch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lorat_plugin.data.datasets.write import generated_sequence, write_dataset


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
