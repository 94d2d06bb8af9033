"""Tracking metrics, each exactly as its official tool defines it (the tools' source files are named below).

Boxes here are ``x, y, w, h`` in the benchmark's own file convention (what the official tool reads), because the
definitions are not all translation-invariant (GOT-10k clips to the image, TrackingNet rounds to integers).
Every function returns fractions in [0, 1]; reports print percentages.

- ``got10k_*``: got10k toolkit 0.1.3 ``ExperimentGOT10k.report`` (= the GOT-10k server): frame 0 excluded, only
  frames with ``cover > 0``, IoU of boxes clipped to the image, all frames of all runs and sequences pooled;
  AO = mean IoU, SR_t = mean(IoU > t), 101-point success curve, speed = mean(1 / t) over positive times.
- ``ope_*``: pytracking ``extract_results`` (the convention of the LoRAT paper and of the reference
  implementation's evaluator): frame 0 = GT, zero-sized predictions replaced by the previous box, 21 overlap
  thresholds with strict ``>``, centre error thresholds 0..50 px and 0..0.5 (normalised by the GT size) with ``<=``;
  invalid GT frames never count as overlap successes; per-sequence curves averaged over sequences;
  AUC = mean of the 21-point curve, P = precision at 20 px, P_norm = at 0.20. The ``kind`` selects pytracking's
  per-dataset rule: ``lasot`` (LaSOT, LaSOT_ext: invisible frames are misses, denominator = all frames),
  ``uav`` (denominator = all frames, frames without GT count as precision hits), ``generic`` (denominator =
  frames with valid GT).
- ``lasot_toolkit_*``: the LaSOT MATLAB toolkit (LaSOT, LaSOT_ext); its differences from pytracking: below.
- ``got10k_otb_*``: got10k ``ExperimentOTB.report`` (also UAV123 with NaN GT rows dropped, and NfS).
- ``trackingnet_*``: TrackingNet devkit ``metrics.py`` (the server), rules at ``trackingnet_sequence``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lorat_plugin.geometry import rect_iou

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
GOT10K_THRESHOLDS = np.linspace(0.0, 1.0, 101)
PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0
TRACKINGNET_X = np.linspace(0.0, 1.0, 21)
TRACKINGNET_PRECISION = np.linspace(0.0, 50.0, 21)
TRACKINGNET_NORM_PRECISION = np.linspace(0.0, 0.5, 21)


def center_error(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Euclidean distance between centres ``xy + (wh - 1) / 2`` (got10k, pytracking, LaSOT toolkit)."""
    c1 = boxes1[:, :2] + (boxes1[:, 2:] - 1) / 2
    c2 = boxes2[:, :2] + (boxes2[:, 2:] - 1) / 2
    return np.sqrt(np.sum((c1 - c2) ** 2, axis=1))


@dataclass
class Got10kSequence:
    ious: np.ndarray   # pooled IoUs of all runs (frame 0 and cover-0 frames removed)
    times: np.ndarray  # positive per-frame times of all runs
    length: int        # frames minus the first, as the toolkit's seq_wise 'length'


def got10k_sequence(runs: list[np.ndarray], gt: np.ndarray, cover: np.ndarray, resolution: tuple[int, int],
                    times: np.ndarray | None = None) -> Got10kSequence:
    gt = np.asarray(gt, dtype=np.float64)
    keep = np.asarray(cover)[1:] > 0
    ious = []
    for boxes in runs:
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.shape != gt.shape:
            raise ValueError(f"{len(boxes)} result boxes for {len(gt)} frames")
        ious.append(rect_iou(boxes[1:], gt[1:], bound=resolution)[keep])
    t = np.zeros(0) if times is None else np.asarray(times, dtype=np.float64).ravel()
    t = t[~np.isnan(t)]
    return Got10kSequence(np.concatenate(ious), t[t > 0], len(gt) - 1)


def got10k_summary(ious: np.ndarray, times: np.ndarray) -> dict:
    ious = np.asarray(ious, dtype=np.float64)
    return {
        "ao": float(np.mean(ious)) if ious.size else float("nan"),
        "sr50": float(np.mean(ious > 0.5)) if ious.size else float("nan"),
        "sr75": float(np.mean(ious > 0.75)) if ious.size else float("nan"),
        "speed_fps": float(np.mean(1.0 / times)) if len(times) else -1.0,
        "succ_curve": np.mean(ious[:, None] > GOT10K_THRESHOLDS[None, :], axis=0).tolist() if ious.size else [],
    }


def got10k_benchmark(sequences: dict[str, Got10kSequence]) -> dict:
    """``{"overall": {...}, "seq_wise": {...}}`` with got10k's pooling over frames of all sequences."""
    seq_wise = {}
    for name, s in sequences.items():
        summary = got10k_summary(s.ious, s.times)
        seq_wise[name] = {"ao": summary["ao"], "sr": summary["sr50"], "sr75": summary["sr75"],
                          "speed_fps": summary["speed_fps"], "length": s.length}
    overall = got10k_summary(np.concatenate([s.ious for s in sequences.values()]),
                             np.concatenate([s.times for s in sequences.values()]))
    overall["sr"] = overall["sr50"]
    return {"overall": overall, "seq_wise": seq_wise}


@dataclass
class OPECurves:
    success: np.ndarray         # 21
    precision: np.ndarray       # 51
    norm_precision: np.ndarray  # 51
    average_overlap: float      # mean IoU over valid frames

    @staticmethod
    def mean(curves: list["OPECurves"]) -> "OPECurves":
        return OPECurves(np.mean([c.success for c in curves], axis=0),
                         np.mean([c.precision for c in curves], axis=0),
                         np.mean([c.norm_precision for c in curves], axis=0),
                         float(np.mean([c.average_overlap for c in curves])))

    def scores(self) -> dict:
        return {"auc": float(np.mean(self.success)), "precision": float(self.precision[20]),
                "norm_precision": float(self.norm_precision[20]), "sr50": float(self.success[10]),
                "sr75": float(self.success[15]), "ao": self.average_overlap}


def _overlap_inclusive(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """pytracking's IoU: inclusive pixel corners (the -1/+1 cancel, so this equals the continuous IoU)."""
    tl = np.maximum(pred[:, :2], gt[:, :2])
    br = np.minimum(pred[:, :2] + pred[:, 2:] - 1.0, gt[:, :2] + gt[:, 2:] - 1.0)
    size = np.clip(br - tl + 1.0, 0, None)
    intersection = size.prod(axis=1)
    union = pred[:, 2:].prod(axis=1) + gt[:, 2:].prod(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return intersection / union


def ope_sequence(pred: np.ndarray, gt: np.ndarray, *, kind: str = "generic",
                 target_visible: np.ndarray | None = None, name: str = "") -> OPECurves:
    """One sequence's curves by pytracking's ``calc_seq_err_robust`` + ``extract_results`` rules."""
    pred = np.array(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
        raise ValueError(f"{name}: invalid results (NaN or negative size); pytracking rejects them too")
    zero = (pred[:, 2:] == 0).any(axis=1)
    if zero.any():  # a zero-sized prediction takes the previous frame's box (where the GT is known)
        gt_known = ~np.isnan(gt).any(axis=1)
        for i in range(1, len(pred)):
            if zero[i] and gt_known[i]:
                pred[i] = pred[i - 1]
    if len(pred) < len(gt) and kind == "lasot":
        raise ValueError(f"{name}: {len(pred)} result boxes for {len(gt)} frames")
    pred = np.concatenate([pred, np.zeros((max(len(gt) - len(pred), 0), 4))])[:len(gt)]  # missing rows: misses
    pred[0] = gt[0]
    with np.errstate(invalid="ignore"):
        valid = (gt[:, 2] > 0) & (gt[:, 3] > 0)
    if target_visible is not None:
        target_visible = np.asarray(target_visible, dtype=bool)
        valid &= target_visible
    with np.errstate(invalid="ignore", divide="ignore"):
        pc, gc = pred[:, :2] + (pred[:, 2:] - 1) / 2, gt[:, :2] + (gt[:, 2:] - 1) / 2
        err_center = np.sqrt(np.sum((pc - gc) ** 2, axis=1))
        err_norm = np.sqrt(np.sum((pc / gt[:, 2:] - gc / gt[:, 2:]) ** 2, axis=1))
        overlap = _overlap_inclusive(pred, gt)
    err_center[~valid] = -1.0 if kind == "uav" else np.inf
    err_norm[~valid] = -1.0
    overlap[~valid] = -1.0
    if kind == "lasot" and target_visible is not None:
        err_norm[~target_visible] = np.inf
        err_center[~target_visible] = np.inf
    length = len(gt) if kind in ("lasot", "uav") else int(valid.sum())
    if length <= 0:
        raise ValueError(f"{name}: no frame with a valid ground-truth box")
    average_overlap = float(np.mean(overlap[valid])) if valid.any() else float("nan")
    return OPECurves(np.sum(overlap[:, None] > SUCCESS_THRESHOLDS[None, :], axis=0) / length,
                     np.sum(err_center[:, None] <= PRECISION_THRESHOLDS[None, :], axis=0) / length,
                     np.sum(err_norm[:, None] <= NORM_PRECISION_THRESHOLDS[None, :], axis=0) / length,
                     average_overlap)


def lasot_toolkit_sequence(pred: np.ndarray, gt: np.ndarray, absent: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(success 21, precision 51, normalised precision 51) of one sequence as the LaSOT MATLAB toolkit computes
    them (``calc_seq_err_robust.m`` + ``eval_tracker.m``).

    Invalid predictions (NaN, w or h <= 0) take the previous box; frame 0 := GT; absent frames are removed but the
    denominator stays the full length (they are misses); frames whose GT has any entry <= 0 get overlap -1 and
    centre error -1 (a precision hit, as in the toolkit).
    """
    pred = np.array(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    n = len(gt)
    if len(pred) < n:
        raise ValueError(f"{len(pred)} result boxes for {n} frames")
    pred = pred[:n]
    gt_known = ~np.isnan(gt).any(axis=1)
    for i in range(1, n):
        r = pred[i]
        if (np.isnan(r).any() or r[2] <= 0 or r[3] <= 0) and gt_known[i]:
            pred[i] = pred[i - 1]
    pred[0] = gt[0]
    keep = ~np.asarray(absent, dtype=bool)
    pred, gt = pred[keep], gt[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.sum(gt > 0, axis=1) == 4
        overlap = -np.ones(len(gt))
        overlap[valid] = _overlap_inclusive(pred[valid], gt[valid])
        pc, gc = pred[:, :2] + (pred[:, 2:] - 1) / 2, gt[:, :2] + (gt[:, 2:] - 1) / 2
        error = np.sqrt(np.sum((pc - gc) ** 2, axis=1))
        norm_error = np.sqrt(np.sum((pc / gt[:, 2:] - gc / gt[:, 2:]) ** 2, axis=1))
    error[~valid] = -1.0
    norm_error[~valid] = -1.0
    denominator = n + np.finfo(float).eps
    return (np.sum(overlap[:, None] > SUCCESS_THRESHOLDS[None, :], axis=0) / denominator,
            np.sum(error[:, None] <= PRECISION_THRESHOLDS[None, :], axis=0) / denominator,
            np.sum(norm_error[:, None] <= NORM_PRECISION_THRESHOLDS[None, :], axis=0) / denominator)


def lasot_toolkit_benchmark(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """Sequence-averaged curves as ``plot_draw_save.m``: a sequence whose curve is all zero is left out of that
    curve's average (so a total failure is ignored by the official LaSOT numbers)."""
    out = {}
    for index, key in enumerate(("success", "precision", "norm_precision")):
        rows = np.array([c[index] for c in curves.values()])
        kept = rows[rows.sum(axis=1) > np.finfo(float).eps]
        mean = kept.mean(axis=0) if len(kept) else np.zeros(rows.shape[1])
        out[f"{key}_curve"] = mean.tolist()
        out[f"{key}_sequences"] = int(len(kept))
    out["auc"] = float(np.mean(out["success_curve"]))
    out["precision"] = float(out["precision_curve"][20])
    out["norm_precision"] = float(out["norm_precision_curve"][20])
    return out


def got10k_otb_sequence(boxes: np.ndarray, gt: np.ndarray, *, drop_nan_gt: bool = False
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(21-point success curve, 51-point precision curve) of ``ExperimentOTB.report`` for one sequence."""
    boxes = np.array(boxes, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if boxes.shape != gt.shape:
        raise ValueError(f"{len(boxes)} result boxes for {len(gt)} frames")
    boxes[0] = gt[0]
    if drop_nan_gt:  # ExperimentUAV123: frames whose GT is NaN are dropped
        keep = ~np.any(np.isnan(gt), axis=1)
        boxes, gt = boxes[keep], gt[keep]
    ious = rect_iou(boxes, gt)
    errors = center_error(boxes, gt)
    with np.errstate(invalid="ignore"):
        return (np.mean(ious[:, None] > SUCCESS_THRESHOLDS[None, :], axis=0),
                np.mean(errors[:, None] <= PRECISION_THRESHOLDS[None, :], axis=0))


def got10k_otb_speed(times: np.ndarray | None) -> float:
    """Mean 1 / t over the first run's positive times (N x runs seconds), 0 without times."""
    t = np.zeros(0) if times is None else np.asarray(times, dtype=np.float64)[:, 0]
    t = t[t > 0]
    return float(np.mean(1.0 / t)) if len(t) else 0.0


def got10k_otb_benchmark(curves: dict[str, tuple[np.ndarray, np.ndarray]], speeds: dict[str, float]) -> dict:
    success, precision = (np.mean(c, axis=0) for c in zip(*curves.values()))
    nonzero = [s for s in speeds.values() if s > 0]
    return {"success_score": float(np.mean(success)), "precision_score": float(precision[20]),
            "success_rate": float(success[10]), "speed_fps": float(np.sum(nonzero) / len(nonzero)) if nonzero else -1.0,
            "success_curve": success.tolist(), "precision_curve": precision.tolist()}


def trackingnet_sequence(pred: np.ndarray | None, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(success, precision, normalised precision) 21-point curves of one sequence, as the TrackingNet server: boxes
    rounded to integers (half to even, as numpy), frame 0 = GT, inclusive-pixel IoU, curves over IoU 0..1, 0..50 px
    and 0..0.5 (each score is the trapezoid area over [0, 1]: ``trapezoid``).

    ``pred`` None (no file in the submission) counts as all-zero boxes; extra rows are ignored and missing rows
    count as failures, as the server's pandas alignment does.
    """
    gt = np.round(np.asarray(gt, dtype=np.float64))
    n = len(gt)
    sub = np.zeros((n, 4)) if pred is None else np.full((n, 4), np.nan)
    if pred is not None:
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)[:n]
        sub[:len(pred)] = pred
    sub = np.round(sub)
    sub[0] = gt[0]
    a_x2, a_y2 = gt[:, 0] + gt[:, 2] - 1.0, gt[:, 1] + gt[:, 3] - 1.0
    s_x2, s_y2 = sub[:, 0] + sub[:, 2] - 1.0, sub[:, 1] + sub[:, 3] - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        inter_w = np.clip(np.round(np.fmin(a_x2, s_x2) - np.fmax(gt[:, 0], sub[:, 0]) + 1), 0, None)
        inter_h = np.clip(np.round(np.fmin(a_y2, s_y2) - np.fmax(gt[:, 1], sub[:, 1]) + 1), 0, None)
        # pandas' row-wise max/min skip NaN; where the submission is NaN the IoU is NaN anyway
        inter = inter_w * inter_h
        iou = inter / (gt[:, 2] * gt[:, 3] + sub[:, 2] * sub[:, 3] - inter)
        iou = np.where(np.isnan(sub).any(axis=1), np.nan, iou)
        dx = (gt[:, 0] + (gt[:, 2] + 1) / 2) - (sub[:, 0] + (sub[:, 2] + 1) / 2)
        dy = (gt[:, 1] + (gt[:, 3] + 1) / 2) - (sub[:, 1] + (sub[:, 3] + 1) / 2)
        distance = np.sqrt(dx * dx + dy * dy)
        norm_distance = np.sqrt((dx / gt[:, 2]) ** 2 + (dy / gt[:, 3]) ** 2)
        success = np.sum(iou[:, None] > TRACKINGNET_X, axis=0) / n
        precision = np.sum(distance[:, None] <= TRACKINGNET_PRECISION, axis=0) / n
        norm_precision = np.sum(norm_distance[:, None] <= TRACKINGNET_NORM_PRECISION, axis=0) / n
    return success, precision, norm_precision


def trapezoid(curve: np.ndarray, x: np.ndarray = TRACKINGNET_X) -> float:
    curve = np.asarray(curve, dtype=np.float64)
    return float(np.sum((curve[1:] + curve[:-1]) * np.diff(x)) / 2.0)


def trackingnet_benchmark(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    success, precision, norm_precision = (np.mean(c, axis=0) for c in zip(*curves.values()))
    return {"success": trapezoid(success), "precision": trapezoid(precision),
            "norm_precision": trapezoid(norm_precision), "success_curve": success.tolist(),
            "precision_curve": precision.tolist(), "norm_precision_curve": norm_precision.tolist()}
