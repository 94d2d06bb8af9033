"""The geometry layer shared by inference and training: normalisation, the one IoU, the token-cell rule."""
from __future__ import annotations

import numpy as np
import torch

from lorat_plugin.geometry import cell_mask, normalize_images, rect_iou, template_mask


def test_normalize_images_same_for_uint8_and_float_inside_and_outside_inference_mode() -> None:
    images = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    with torch.inference_mode():
        first = normalize_images(images)
    second = normalize_images(images.float())  # stats first built in inference mode, reused outside it
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert images.dtype == torch.uint8 and not second.is_inference()


def test_rect_iou_of_empty_boxes_is_zero() -> None:
    assert rect_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0] == 0.0
    assert rect_iou([[0, 0, 10, 10]], [[20, 20, 5, 5]])[0] == 0.0


def test_template_mask_is_the_cell_rule() -> None:
    box = np.array([13.9, 14.0, 70.5, 111.99])
    mask = template_mask(box, 112, 8)
    assert mask.dtype == np.int64 and mask.shape == (8, 8)
    np.testing.assert_array_equal(mask.astype(bool), cell_mask(box, 112, 8))
    assert mask.sum(axis=1).tolist() == [0] + [6] * 7 and mask[1].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
