"""Classical baselines with the got10k tracker interface, and an adapter that runs any such per-sequence tracker
as a *batch tracker* (``initialize(frames, boxes) -> states``, ``track(states, frames) -> (boxes, scores)``), so
the evaluation harness runs them exactly like LoRAT.

* :class:`OpenCVTracker` ``("csrt")`` / ``("kcf")``: OpenCV's correlation filter trackers
  (``opencv-contrib-python-headless``; the main namespace of OpenCV 4.5.1+, else ``cv2.legacy``).
* :class:`StaticBoxTracker`: returns the initial box on every frame (the floor every tracker must beat).

    run_benchmark(baseline("csrt"), sequences, "results/CSRT", tracker_name="CSRT")  # BatchAdapter of OpenCVTracker

Defined behaviour: OpenCV's ``update`` returning ``ok=False`` (target lost) or raising keeps the previous box and
reports score 0; an OpenCV ``init`` that raises (e.g. a box OpenCV cannot model) leaves the tracker static with
score 0 until the end of the sequence. Otherwise the score is 1 (these trackers have no calibrated confidence).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from got10k.trackers import Tracker

from ..data.sequence import read_image, to_rgb

log = logging.getLogger(__name__)

OPENCV_ALGORITHMS = {"csrt": "TrackerCSRT_create", "kcf": "TrackerKCF_create"}
BASELINES = ("csrt", "kcf", "static")


def as_rgb(image: Any) -> np.ndarray:
    """A got10k image (PIL image, RGB/grayscale/RGBA array or file path) as H x W x 3 uint8 RGB."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image))
    return to_rgb(image)


def _check_box(box: Any) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"init box must be 4 finite numbers x, y, w, h with w, h > 0, got {box.tolist()}")
    return box


# Every OpenCV wheel writes the same cv2/ package; only the contrib builds have CSRT and KCF. vot-toolkit pulls
# opencv-python, and pip cannot order two wheels that write one folder: whichever was installed last is cv2.
OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                        "opencv-contrib-python-headless")
OPENCV_FIX = "pip install --force-reinstall --no-deps opencv-contrib-python-headless"


def _opencv_problem(problem: str) -> ImportError:
    """``problem``, the OpenCV wheels installed and the command that fixes it."""
    import importlib.metadata

    installed = []
    for name in OPENCV_DISTRIBUTIONS:
        try:
            installed.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ImportError(f"{problem}; installed OpenCV wheels: {', '.join(installed) or 'none'} (only the contrib ones "
                       f"have the trackers, and the one installed last owns cv2). Fix: {OPENCV_FIX}")


def opencv_factory(algorithm: str) -> Callable[[], Any]:
    """The OpenCV constructor of a tracker, from the main namespace or ``cv2.legacy``."""
    key = algorithm.lower()
    if key not in OPENCV_ALGORITHMS:
        raise ValueError(f"unknown OpenCV tracker {algorithm!r}: expected one of {', '.join(OPENCV_ALGORITHMS)}")
    try:
        import cv2
    except ImportError as e:
        raise _opencv_problem(f"the CSRT and KCF baselines need OpenCV's contrib trackers ({e})") from e
    name = OPENCV_ALGORITHMS[key]
    for namespace in (cv2, getattr(cv2, "legacy", None)):
        if namespace is not None and hasattr(namespace, name):
            return getattr(namespace, name)
    raise _opencv_problem(f"this OpenCV build ({getattr(cv2, '__version__', '?')}) has no {name}")


class OpenCVTracker(Tracker):
    """OpenCV's CSRT or KCF behind got10k's ``init(image, box)`` / ``update(image) -> box`` (images as
    :func:`as_rgb` takes them; OpenCV works on whole pixels: the init box is rounded outwards)."""

    def __init__(self, algorithm: str = "csrt", *, name: str | None = None) -> None:
        super().__init__(name=name or algorithm.upper(), is_deterministic=True)
        self.algorithm = algorithm.lower()
        self._create = opencv_factory(self.algorithm)
        self._tracker: Any = None  # None after a failed init: the tracker stays on the init box
        self._initialised = False
        self.box = np.zeros(4)
        self.score = 0.0
        self.failures = 0  # frames on which OpenCV reported a loss or raised

    def init(self, image: Any, box: Any) -> None:
        import cv2

        frame = as_rgb(image)
        box = _check_box(box)
        height, width = frame.shape[:2]
        x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
        x1, y1 = min(width, int(np.ceil(box[0] + box[2]))), min(height, int(np.ceil(box[1] + box[3])))
        self.box, self.score, self.failures = box.copy(), 1.0, 0
        self._tracker, self._initialised = self._create(), True
        try:
            if x1 - x0 < 1 or y1 - y0 < 1:
                raise ValueError(f"the box {box.tolist()} does not overlap the {width}x{height} image")
            self._tracker.init(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), (x0, y0, x1 - x0, y1 - y0))
        except (cv2.error, ValueError) as e:
            log.warning("%s could not initialise on box %s (%s): it will report the init box", self.name,
                        box.tolist(), e)
            self._tracker, self.score = None, 0.0

    def update(self, image: Any) -> np.ndarray:
        import cv2

        if not self._initialised:
            raise RuntimeError(f"{self.name}.update() called before init()")
        if self._tracker is None:
            self.score = 0.0
            return self.box.copy()
        try:
            ok, found = self._tracker.update(cv2.cvtColor(as_rgb(image), cv2.COLOR_RGB2BGR))
        except cv2.error as e:
            log.debug("%s update failed: %s", self.name, e)
            ok, found = False, None
        found = np.asarray(found, dtype=np.float64).reshape(-1) if ok else None
        if found is not None and found.shape == (4,) and np.all(np.isfinite(found)) and found[2] > 0 and found[3] > 0:
            self.box, self.score = found, 1.0
        else:
            self.score = 0.0
            self.failures += 1
        return self.box.copy()


class StaticBoxTracker(Tracker):
    """Reports the initial box on every frame, score 1."""

    def __init__(self, *, name: str = "StaticBox") -> None:
        super().__init__(name=name, is_deterministic=True)
        self.box: np.ndarray | None = None
        self.score = 1.0

    def init(self, image: Any, box: Any) -> None:
        self.box = _check_box(box).copy()

    def update(self, image: Any) -> np.ndarray:
        if self.box is None:
            raise RuntimeError(f"{self.name}.update() called before init()")
        return self.box.copy()


@dataclass(eq=False)
class BaselineState:
    """One sequence tracked by its own per-sequence tracker. ``box`` and ``score`` are the latest output."""

    tracker: Tracker
    box: np.ndarray
    score: float


class BatchAdapter:
    """A factory of per-sequence got10k trackers as a batch tracker for ``run_benchmark``: one tracker instance per
    batch element, updated one after the other; scores from the tracker's ``score`` attribute, else 1."""

    def __init__(self, factory: Callable[[], Tracker], *, name: str | None = None) -> None:
        self.factory = factory
        self.name = name or factory().name

    def initialize(self, frames: list[Any], boxes: Any) -> list[BaselineState]:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(frames) != len(boxes):
            raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
        states = []
        for frame, box in zip(frames, boxes):
            tracker = self.factory()
            tracker.init(as_rgb(frame), box)
            states.append(BaselineState(tracker, box.copy(), 1.0))
        return states

    def track(self, states: list[BaselineState], frames: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        if len(states) != len(frames):
            raise ValueError(f"{len(states)} states but {len(frames)} frames")
        boxes = np.empty((len(states), 4))
        scores = np.empty(len(states))
        for i, (state, frame) in enumerate(zip(states, frames)):
            state.box = np.asarray(state.tracker.update(as_rgb(frame)), dtype=np.float64).reshape(4)
            state.score = float(getattr(state.tracker, "score", 1.0))
            boxes[i], scores[i] = state.box, state.score
        return boxes, scores


def baseline(name: str) -> BatchAdapter:
    """``"csrt"``, ``"kcf"`` or ``"static"`` as a batch tracker named CSRT, KCF or StaticBox."""
    key = name.lower().replace("-", "").replace("_", "")
    if key in OPENCV_ALGORITHMS:
        opencv_factory(key)  # fail now, not on the first sequence, when OpenCV lacks the tracker
        return BatchAdapter(lambda: OpenCVTracker(key), name=key.upper())
    if key in ("static", "staticbox"):
        return BatchAdapter(StaticBoxTracker, name="StaticBox")
    raise ValueError(f"unknown baseline {name!r}: expected one of {', '.join(BASELINES)}")
