"""Training targets on the token grids: positive search cells, the normalised GT box, the template foreground mask.

Boxes are x1, y1, x2, y2 in crop pixels, already clipped to the crop. A cell is covered when the box, scaled to grid
units and rasterised (start floored, end ``floor(x + 1 - 1e-4)``), overlaps it even partially -- the same rule marks
positive search cells (lorat-spec §2) and template foreground tokens (§1.3).
"""
from __future__ import annotations

import numpy as np

from ..engine.crop import rasterize


def covered_cells(box: np.ndarray, crop_size: int, grid: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) grid-cell range (end exclusive, clipped to the grid) that ``box`` overlaps."""
    scaled = np.asarray(box, dtype=np.float64) * (grid / crop_size)
    x1, y1, x2, y2 = np.clip(rasterize(scaled), 0, grid).astype(np.int64)
    return int(x1), int(y1), int(x2), int(y2)


def cell_mask(box: np.ndarray, crop_size: int, grid: int, dtype: type = np.bool_) -> np.ndarray:
    x1, y1, x2, y2 = covered_cells(box, crop_size, grid)
    mask = np.zeros((grid, grid), dtype=dtype)
    mask[y1:y2, x1:x2] = 1
    return mask


def positive_cells(box: np.ndarray, crop_size: int, grid: int) -> np.ndarray:
    """grid x grid bools: the search cells that learn the target (every sample is a positive pair)."""
    mask = cell_mask(box, crop_size, grid)
    if not mask.any():
        raise ValueError(f"search box {np.round(box, 2).tolist()} covers no cell of the {grid}x{grid} grid")
    return mask


def template_mask(box: np.ndarray, crop_size: int, grid: int) -> np.ndarray:
    """grid x grid int64: 1 for template tokens on the target (token-type row 1), 0 for background (row 0)."""
    return cell_mask(box, crop_size, grid, dtype=np.int64)


def normalized_box(box: np.ndarray, crop_size: int) -> np.ndarray:
    """The regression target: x1 y1 x2 y2 in units of the search crop's side."""
    return (np.asarray(box, dtype=np.float64) / crop_size).astype(np.float32)
