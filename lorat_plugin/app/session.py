"""One video being tracked from the page: targets drawn on any frame, corrected, removed; the boxes so far.

Each target is tracked from the frames where a box was drawn for it (its *anchors*): the engine starts it there
(``TrackingEngine.initialize``) and advances it frame by frame with every other target of that frame in one
``TrackingEngine.track`` call, as ``lorat track --init ... --init ...`` does. A target keeps its own frontier (its last
tracked frame), so drawing a new box for one target on frame ``f`` re-tracks that target from ``f`` and leaves the
others' boxes as they are: where the engine calls its network once per sequence (the CPU default) a target's boxes
do not depend on which other targets share its calls.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..palette import TRACKER_CYCLE, hex_colour, target_colour
from .frames import FrameStore


@dataclass(eq=False)  # targets are told apart by identity (their fields hold arrays)
class Target:
    """One target of a session: where it was drawn, where it stops, and its boxes so far."""

    id: int  # 1, 2, ... in the order drawn: the target column of the CSV
    anchors: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> box x, y, w, h drawn there
    removed_from: int | None = None  # no box from this frame on
    frontier: int = -1  # the last frame with a box for this target
    state: Any = None  # the engine's state at ``frontier``
    boxes: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict)  # frame -> (box, confidence)

    def active_at(self, frame: int) -> bool:
        return self.removed_from is None or frame < self.removed_from

    def next_frame(self) -> int | None:
        """The first frame this target still needs, or ``None`` when it has nothing left (before the end)."""
        following = self.frontier + 1
        if not self.active_at(following):
            return None
        if self.state is not None or following in self.anchors:
            return following
        later = [f for f in self.anchors if f > self.frontier and self.active_at(f)]
        return min(later) if later else None


class TrackingSession:
    """The targets and boxes of one source; :meth:`start` tracks in a background thread until the end, a pause or
    an error. ``events`` is the log the page follows (server-sent events): every change in order."""

    def __init__(self, session_id: str, store: FrameStore, engine: Any, engine_lock: threading.Lock) -> None:
        self.id = session_id
        self.store = store
        self.engine = engine
        self.engine_lock = engine_lock  # one network call at a time across sessions: the engine's buffers are shared
        self.targets: dict[int, Target] = {}
        self.events: list[dict[str, Any]] = []
        self.error: str | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- what the page changes (each pauses a run first: the change applies to a stopped tracker) ----

    def set_box(self, frame: int, box: Any, target_id: int | None = None) -> int:
        """Draw ``box`` for target ``target_id`` (a new target when ``None``) on ``frame``: the target restarts
        there. Boxes are whole pixels, as typed on a command line. Returns the target's id."""
        box = np.round(np.asarray(box, dtype=np.float64).reshape(-1))
        if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] < 1 or box[3] < 1:
            raise ValueError("a box is four numbers x, y, w, h with a width and height of at least 1 pixel")
        self._check_frame(frame)
        if self.store.live and frame != len(self.store) - 1:
            raise ValueError(f"{self.store.name} is live: draw on its newest frame ({len(self.store)})")
        self.pause()
        with self._lock:
            if target_id is None:
                target_id = max(self.targets, default=0) + 1
                self.targets[target_id] = Target(target_id)
            target = self._target(target_id)
            target.anchors[frame] = box
            if target.removed_from is not None and target.removed_from <= frame:
                target.removed_from = None  # back from this frame on
            self._forget(target, frame)
            self._log({"type": "target", "target": target_id, "frame": frame, "box": box.tolist()})
        return target_id

    def remove(self, target_id: int, frame: int) -> None:
        """No box for the target from ``frame`` on (frame 0: the target is gone)."""
        self._check_frame(frame)
        self.pause()
        with self._lock:
            target = self._target(target_id)
            if frame == 0 or not any(f < frame for f in target.anchors):
                del self.targets[target_id]
                self._log({"type": "clear", "target": target_id, "from": 0, "removed": True})
                return
            target.removed_from = frame
            for anchor in [f for f in target.anchors if f >= frame]:
                del target.anchors[anchor]
            self._forget(target, frame)

    def _forget(self, target: Target, frame: int) -> None:
        """Drop the target's boxes from ``frame`` on; a target already past ``frame`` restarts there (from its
        anchor, or not at all once removed); one not yet there goes on from where it stopped."""
        for f in [f for f in target.boxes if f >= frame]:
            del target.boxes[f]
        if target.frontier >= frame:
            target.frontier = frame - 1
            target.state = None
        self._log({"type": "clear", "target": target.id, "from": frame,
                   "anchors": {str(f): b.tolist() for f, b in target.anchors.items()}})

    # ---- tracking ----

    def start(self) -> bool:
        """Track in the background from where each target stopped. False when a run is already going."""
        with self._lock:
            if self.running:
                return False
            if not self.targets:
                raise ValueError("draw a box around a target first")
            self._stop.clear()
            self.error = None
            self._thread = threading.Thread(target=self._run, name=f"track {self.id}", daemon=True)
            self._thread.start()
            self._log({"type": "state", "running": True})
            return True

    def pause(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stop.set()
            thread.join()

    def wait(self, timeout: float | None = None) -> None:
        """Until the run ends (the source's end, a pause or an error)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        done = False
        try:
            begin = self._first_needed()
            if begin is not None:
                for frame_index, frame in enumerate(self.store.iterate_from(begin), start=begin):
                    if self._stop.is_set():
                        break
                    self._step(frame_index, frame)
                else:
                    done = True  # the source ended
            else:
                done = True
        except Exception as e:  # a frame that cannot be decoded, a box outside the image: shown on the page
            self.error = str(e)
        finally:
            with self._lock:
                self._log({"type": "state", "running": False, "error": self.error, "done": done})

    def _first_needed(self) -> int | None:
        with self._lock:
            needed = [f for f in (t.next_frame() for t in self.targets.values()) if f is not None]
        return min(needed) if needed else None

    def _step(self, frame_index: int, frame: np.ndarray) -> None:
        """Track frame ``frame_index`` for every target that needs it."""
        from ..data.sequence import to_rgb

        frame = to_rgb(frame)  # one frame object for all its targets: the engine converts it once
        with self._lock:
            due = [t for t in self.targets.values() if t.next_frame() == frame_index]
            starting = [t for t in due if frame_index in t.anchors]
            following = [t for t in due if frame_index not in t.anchors]
            anchors = np.stack([t.anchors[frame_index] for t in starting]) if starting else None
        # The network runs without the session's lock, which the page's requests take (the targets cannot change
        # meanwhile: every change pauses this thread first).
        with self.engine_lock:
            started = self.engine.initialize([frame] * len(starting), anchors) if starting else []
            boxes, scores = self.engine.track([t.state for t in following], [frame] * len(following))  # none: empty
        with self._lock:
            for target, state in zip(starting, started):
                target.state = state
                target.boxes[frame_index] = (state.box.copy(), float(state.score))
            for target, box, score in zip(following, boxes, scores):
                target.boxes[frame_index] = (np.array(box, dtype=np.float64), float(score))
            shown = {}
            for target in starting + following:
                target.frontier = frame_index
                box, score = target.boxes[frame_index]
                shown[str(target.id)] = [*box.tolist(), score]
            if shown:
                self._log({"type": "boxes", "frame": frame_index, "boxes": shown})

    # ---- what the page reads ----

    def snapshot(self) -> dict[str, Any]:
        """Everything the page needs to draw (and the event count it has seen with it); ``colours``: the targets'
        colours in order (the palette's cycle), so the page draws what ``lorat track --render`` draws."""
        with self._lock:
            return {"id": self.id, "name": self.store.name, "frames": self.store.expected,
                    "colours": [hex_colour(target_colour(k)) for k in range(len(TRACKER_CYCLE))],
                    "complete": self.store.complete, "fps": self.store.fps,
                    "size": self.store.size, "running": self.running, "error": self.error,
                    "targets": {str(t.id): {"anchors": {str(f): b.tolist() for f, b in t.anchors.items()},
                                            "boxes": {str(f): [*b.tolist(), s] for f, (b, s) in t.boxes.items()}}
                                for t in self.targets.values()},
                    "events": len(self.events)}

    def events_since(self, cursor: int) -> list[dict[str, Any]]:
        with self._lock:
            return self.events[cursor:]

    def rows(self) -> Iterator[tuple[int, int, np.ndarray, float]]:
        """(frame 0-based, target id, box, confidence) in frame order, targets by id."""
        with self._lock:
            frames = sorted({f for t in self.targets.values() for f in t.boxes})
            for frame in frames:
                for target_id in sorted(self.targets):
                    found = self.targets[target_id].boxes.get(frame)
                    if found is not None:
                        yield frame, target_id, found[0], found[1]

    def _target(self, target_id: int) -> Target:
        if target_id not in self.targets:
            raise ValueError(f"no target {target_id}")
        return self.targets[target_id]

    def _check_frame(self, frame: int) -> None:
        if frame < 0 or (self.store.complete and frame >= len(self.store)):
            raise ValueError(f"no frame {frame}: the video has {len(self.store)} frames")

    def _log(self, event: dict[str, Any]) -> None:
        with self._lock:
            event["seq"] = len(self.events)
            self.events.append(event)
