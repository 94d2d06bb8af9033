"""How far a low-precision or exported tracker's boxes are from the fp32 tracker's on one sequence."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..geometry import rect_iou


@dataclass
class Agreement:
    """How far a tracker's boxes are from the fp32 tracker's on one sequence.

    ``step_px``: per frame, the largest coordinate difference (px) when both start the step from the fp32
    tracker's previous box (one step of numerical difference, no compounding). ``closed_iou``: per frame, the IoU
    of the two trackers' boxes when each runs on its own outputs (what a user sees)."""

    step_px: np.ndarray
    closed_iou: np.ndarray

    def summary(self) -> str:
        return (f"one-step max {self.step_px.max():.3f} px (p95 {np.percentile(self.step_px, 95):.3f}), "
                f"closed-loop IoU min {self.closed_iou.min():.3f} mean {self.closed_iou.mean():.4f}")


def compare_with_fp32(reference: Any, candidate: Any, frames: Sequence[np.ndarray], init_box: np.ndarray
                      ) -> Agreement:
    """Track ``frames`` with two engines (the fp32 ``reference`` and a ``candidate``) and measure their agreement."""
    init = np.asarray(init_box, dtype=np.float64)[None]
    ref = reference.initialize([frames[0]], init)
    forced = candidate.initialize([frames[0]], init)
    free = candidate.initialize([frames[0]], init)
    step_px, closed_iou = [], []
    for frame in frames[1:]:
        forced[0].search_box = ref[0].search_box.copy()  # same starting point as the fp32 tracker
        ref_box, _ = reference.track(ref, [frame])
        forced_box, _ = candidate.track(forced, [frame])
        free_box, _ = candidate.track(free, [frame])
        step_px.append(float(np.abs(ref_box[0] - forced_box[0]).max()))
        closed_iou.append(float(rect_iou(ref_box, free_box)[0]))
    return Agreement(np.array(step_px), np.array(closed_iou))
