"""Box to mask for mask stacks: the rasterised box, the crop-to-frame mapping of SAM's logits, SAM itself (tiny)."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from lorat_plugin.geometry import apply_transform, crop_transform, xywh_to_xyxy
from lorat_plugin.trackers.segmentify import (
    SAM_AREA_FACTOR, SAM_INPUT_SIZE, BoxMasker, SamMasker, box_to_mask, crop_to_content, paste_logits, sam_model_type)


def full(mask_region: tuple[np.ndarray, int, int], width: int, height: int) -> np.ndarray:
    array, x, y = mask_region
    canvas = np.zeros((height, width), dtype=bool)
    canvas[y:y + array.shape[0], x:x + array.shape[1]] = array.astype(bool)
    return canvas


def test_box_mask_covers_the_pixels_the_box_touches() -> None:
    array, x, y = box_to_mask(np.array([10.5, 20.0, 4.0, 3.0]), 100, 50)
    assert (x, y) == (10, 20) and array.shape == (3, 5) and array.all()  # columns 10..14 (10.5 + 4 = 14.5)
    array, x, y = box_to_mask(np.array([-5.0, 45.0, 20.0, 20.0]), 100, 50)  # clipped to the frame
    assert (x, y) == (0, 45) and array.shape == (5, 15)
    array, _, _ = box_to_mask(np.array([200.0, 10.0, 5.0, 5.0]), 100, 50)  # outside: an empty mask
    assert not array.any()
    masks = BoxMasker()(np.zeros((50, 100, 3), dtype=np.uint8), np.array([[1, 2, 3, 4], [5, 6, 7, 8]]))
    assert [m[1:] for m in masks] == [(1, 2), (5, 6)]


def test_crop_to_content() -> None:
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:15, 20:31] = True
    array, x, y = crop_to_content(mask)
    assert (x, y) == (20, 10) and array.shape == (5, 11) and array.dtype == np.uint8
    np.testing.assert_array_equal(full((array, x, y), 60, 40), mask)


def test_logits_of_the_crop_map_back_onto_the_box() -> None:
    """Logits positive exactly where the box lies in SAM's crop come back as the box in the frame."""
    width, height = 320, 240
    box = np.array([100.0, 60.0, 80.0, 40.0])
    scale, translation = crop_transform(xywh_to_xyxy(box), SAM_AREA_FACTOR, SAM_INPUT_SIZE)
    in_crop = apply_transform(xywh_to_xyxy(box), scale, translation)
    low_res = 256
    centres = (np.arange(low_res) + 0.5) * SAM_INPUT_SIZE / low_res
    inside_x = (centres > in_crop[0]) & (centres < in_crop[2])
    inside_y = (centres > in_crop[1]) & (centres < in_crop[3])
    logits = torch.where(torch.as_tensor(inside_y[:, None] & inside_x[None, :]), 10.0, -10.0)
    mask = paste_logits(logits, scale, translation, SAM_INPUT_SIZE, width, height)
    expected = np.zeros((height, width), dtype=bool)
    expected[60:100, 100:180] = True
    assert mask.shape == (height, width)
    assert (mask != expected).sum() <= 2 * (80 + 40) * 1.0  # at most a one-pixel seam around the border
    assert (mask & expected).sum() / expected.sum() > 0.95


def tiny_sam():
    """A SAM with the real architecture's interfaces but a 1-block, 16-wide image encoder (random weights)."""
    modeling = pytest.importorskip("segment_anything.modeling", reason="pip install 'lorat-plugin[sam]'")
    torch.manual_seed(0)
    return modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(depth=1, embed_dim=16, img_size=SAM_INPUT_SIZE, num_heads=1,
                                               patch_size=16, window_size=14, out_chans=256,
                                               norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)),
        prompt_encoder=modeling.PromptEncoder(embed_dim=256, image_embedding_size=(64, 64),
                                              input_image_size=(SAM_INPUT_SIZE, SAM_INPUT_SIZE), mask_in_chans=16),
        mask_decoder=modeling.MaskDecoder(num_multimask_outputs=3, transformer=modeling.TwoWayTransformer(
            depth=1, embedding_dim=256, mlp_dim=64, num_heads=8), transformer_dim=256, iou_head_depth=3,
            iou_head_hidden_dim=32))


def test_sam_masker_returns_one_frame_mask_per_box() -> None:
    masker = SamMasker(tiny_sam(), device="cpu")
    image = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    masks = masker(image, np.array([[40.0, 30.0, 30.0, 20.0], [100.0, 60.0, 20.0, 40.0]]))
    assert len(masks) == 2
    for array, x, y in masks:
        assert array.dtype == np.uint8 and array.ndim == 2
        assert 0 <= x and 0 <= y and x + array.shape[1] <= 160 and y + array.shape[0] <= 120


def test_sam_checkpoint_errors(tmp_path: Path) -> None:
    pytest.importorskip("segment_anything", reason="pip install 'lorat-plugin[sam]'")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        SamMasker.from_checkpoint(tmp_path / "sam_vit_b_01ec64.pth")
    wrong = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 64, 64, 16)}, wrong)
    with pytest.raises(ValueError, match="does not hold SAM vit_b weights"):
        SamMasker.from_checkpoint(wrong)
    renamed = tmp_path / "my_sam.pth"
    with pytest.raises(ValueError, match="LORAT_SAM_MODEL"):
        sam_model_type(renamed, {})
    assert sam_model_type(renamed, {"image_encoder.pos_embed": torch.zeros(1, 64, 64, 1280)}) == "vit_h"
