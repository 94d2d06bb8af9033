"""Boxes: conversions, rasterisation, the IoU every metric uses, and the token cells a box covers.

``xywh`` boxes are x, y, width, height; ``xyxy`` boxes are x1, y1, x2, y2 in continuous pixel coordinates (end
exclusive).
"""
from __future__ import annotations

import numpy as np

def xywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64)
    return np.concatenate((box[..., :2], box[..., :2] + box[..., 2:]), axis=-1)


def xyxy_to_xywh(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64)
    return np.concatenate((box[..., :2], box[..., 2:] - box[..., :2]), axis=-1)


def rasterize(box: np.ndarray) -> np.ndarray:
    """Float box to whole pixels: start floored, end floor(x + 1 - 1e-4) (still exclusive)."""
    box = np.array(box, dtype=np.float64)
    box[..., 2:] += 1 - 1e-4
    return np.floor(box)


def clip_box(box: np.ndarray, width: float, height: float) -> np.ndarray:
    box = np.array(box, dtype=np.float64)
    box[..., 0::2] = np.clip(box[..., 0::2], 0, width)
    box[..., 1::2] = np.clip(box[..., 1::2], 0, height)
    return box


def rect_iou(boxes1: np.ndarray, boxes2: np.ndarray, bound: tuple[float, float] | None = None) -> np.ndarray:
    """IoU of matching rows of ``x, y, w, h`` boxes as got10k's ``rect_iou``: inter / (union + eps), clipped to
    [0, 1] (0 for two empty boxes).

    With ``bound = (W, H)`` both boxes are first clipped as got10k does: ``x`` to [0, W], then ``w`` to
    [0, W - x] (a box sticking out on the left keeps its width; this is the toolkit's definition).
    """
    a = np.array(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.array(boxes2, dtype=np.float64).reshape(-1, 4)
    if a.shape != b.shape:
        raise ValueError(f"IoU of {a.shape} and {b.shape} boxes")
    if bound is not None:
        size = np.asarray(bound, dtype=np.float64)
        for r in (a, b):
            r[:, :2] = np.clip(r[:, :2], 0, size)
            r[:, 2:] = np.clip(r[:, 2:], 0, size - r[:, :2])
    lo = np.maximum(a[:, :2], b[:, :2])
    hi = np.minimum(a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:])
    inter = np.prod(np.maximum(hi - lo, 0), axis=1)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def cell_mask(box: np.ndarray, crop_size: int, grid: int, dtype: type = np.bool_) -> np.ndarray:
    """grid x grid: 1 on the token cells an xyxy box in crop pixels overlaps, even partially (the box in cell units,
    rasterised and clipped to the grid). The reference marks both the positive search cells and the template's
    foreground tokens this way."""
    cells = np.clip(rasterize(np.asarray(box, dtype=np.float64) / (crop_size / grid)), 0, grid).astype(np.int64)
    mask = np.zeros((grid, grid), dtype=dtype)
    mask[cells[1]:cells[3], cells[0]:cells[2]] = 1
    return mask


def template_mask(box: np.ndarray, crop_size: int, grid: int) -> np.ndarray:
    """grid x grid int64, the network's ``z_feat_mask``: 1 for template tokens on the target (token-type row 1),
    0 for background (row 0). ``box``: the target in template-crop pixels (xyxy)."""
    return cell_mask(box, crop_size, grid, dtype=np.int64)
