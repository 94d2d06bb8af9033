"""Training targets on the search grid: positive cells and the normalised GT box.

Boxes are x1, y1, x2, y2 in crop pixels, already clipped to the crop. Positive cells are the cells the box covers
(:func:`lorat_plugin.geometry.cell_mask`, the rule that also marks the template's foreground tokens).
"""
from __future__ import annotations

import numpy as np

from ..geometry import cell_mask


def positive_cells(box: np.ndarray, crop_size: int, grid: int) -> np.ndarray:
    """grid x grid bools: the search cells that learn the target (every sample is a positive pair)."""
    mask = cell_mask(box, crop_size, grid)
    if not mask.any():
        raise ValueError(f"search box {np.round(box, 2).tolist()} covers no cell of the {grid}x{grid} grid")
    return mask


def normalized_box(box: np.ndarray, crop_size: int) -> np.ndarray:
    """The regression target: x1 y1 x2 y2 in units of the search crop's side."""
    return (np.asarray(box, dtype=np.float64) / crop_size).astype(np.float32)
