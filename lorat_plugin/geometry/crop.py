"""SiamFC-style crop geometry and ImageNet normalisation, shared by inference and training.

A crop is the per-axis similarity ``p_out = scale * p_in + translation`` from image to crop pixels; boxes are
``x1, y1, x2, y2`` (continuous, end exclusive). As in the reference it is *pixel aligned*: the canvas part the image
covers is rounded to whole pixels, the matching whole-pixel image region resized into it (bilinear,
``align_corners=False``), the rest filled; the transform actually realised is returned to map predictions back.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .boxes import clip_box, rasterize

# The RGB mean and standard deviation DINOv2 was trained with: timm's IMAGENET_DEFAULT_MEAN/STD
# (timm/data/constants.py), written out so that geometry, which DataLoader workers import, does not load timm.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def context_scale(box: np.ndarray, area_factor: float, output_size: int | tuple[int, int]) -> float:
    """Scale that maps the context-padded box ``w + (f-1)(w+h)/2`` x ``h + (f-1)(w+h)/2`` onto the output area."""
    wh = box[2:] - box[:2]
    padded = wh + (area_factor - 1) * wh.sum() * 0.5
    out_w, out_h = (output_size, output_size) if np.isscalar(output_size) else output_size
    return float(np.sqrt(out_w * out_h / np.prod(padded)))


def crop_transform(box: np.ndarray, area_factor: float, output_size: int | tuple[int, int],
                   scale: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scale[2], translation[2]) that centre ``box`` (xyxy) in the output with the area-factor context.
    A given ``scale`` (e.g. jittered per axis for training) replaces the context scale."""
    out = np.array((output_size, output_size) if np.isscalar(output_size) else output_size, dtype=np.float64)
    if scale is None:
        scale = context_scale(box, area_factor, output_size)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (2,)).copy()
    centre = (box[:2] + box[2:]) * 0.5
    return scale, out / 2.0 - centre * scale


def apply_transform(box: np.ndarray, scale: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """xyxy ``box`` (any leading dims) through ``scale * p + translation``; (2,) transforms or one row per box."""
    box, scale, translation = np.array(box, dtype=np.float64), np.asarray(scale), np.asarray(translation)
    box[..., 0::2] = box[..., 0::2] * scale[..., :1] + translation[..., :1]
    box[..., 1::2] = box[..., 1::2] * scale[..., 1:] + translation[..., 1:]
    return box


def invert_transform(scale: np.ndarray, translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 1.0 / scale, -translation / scale


def crop_image(image: torch.Tensor, scale: np.ndarray, translation: np.ndarray, output_size: int | tuple[int, int],
               fill: torch.Tensor, out: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Crop ``image`` (C x H x W, float or uint8) through (scale, translation) into ``output_size``, pixel aligned.

    Returns the crop (C x out_h x out_w float, written into ``out`` when given), and the realised (scale,
    translation). ``fill`` (C,) colours the canvas the image does not cover. A uint8 image is converted to float
    only over the region that is read (exactly the values a float copy of the whole frame would give).
    """
    c, h, w = image.shape
    out_w, out_h = (output_size, output_size) if np.isscalar(output_size) else output_size
    if out is None:
        dtype = image.dtype if image.is_floating_point() else torch.float32
        out = torch.empty((c, out_h, out_w), dtype=dtype, device=image.device)
    out[:] = fill.view(-1, 1, 1).to(out.dtype)

    covered = rasterize(clip_box(apply_transform(np.array((0.0, 0.0, w, h)), scale, translation), out_w, out_h))
    source = clip_box(rasterize(apply_transform(covered, *invert_transform(scale, translation))), w, h)
    ox1, oy1, ox2, oy2 = covered.astype(np.int64)
    sx1, sy1, sx2, sy2 = source.astype(np.int64)
    if ox2 > ox1 and oy2 > oy1 and sx2 > sx1 and sy2 > sy1:
        # Each channel as an image of its own (a batch of C one-channel images): on the CPU, F.interpolate resizes a
        # single 3-channel image with another kernel when torch runs one thread than when it runs several
        # (PyTorch's aten/src/ATen/native/cpu/UpSampleKernel.cpp, upsample_bilinear2d_kernel_impl_float), and the two
        # round differently; one-channel images always take the several-thread kernel, so the crop, and every box
        # after it, is the same at any thread count and in DataLoader workers (which run one thread). Contiguous: the
        # reference's kernel, whose multi-threaded result this is.
        region = image[:, sy1:sy2, sx1:sx2].contiguous().to(out.dtype)[:, None]
        out[:, oy1:oy2, ox1:ox2] = F.interpolate(region, size=(int(oy2 - oy1), int(ox2 - ox1)), mode="bilinear",
                                                 align_corners=False)[:, 0]
        # The transform actually realised: whole source pixels onto whole canvas pixels, computed in float32
        # arithmetic as the reference does (its boxes are mapped back through exactly these numbers).
        covered32, source32 = covered.astype(np.float32), source.astype(np.float32)
        real_scale = (covered32[2:] - covered32[:2]) / (source32[2:] - source32[:2])
        real_translation = covered32[:2] - source32[:2] * real_scale
        return out, real_scale.astype(np.float64), real_translation.astype(np.float64)
    return out, np.asarray(scale, dtype=np.float64), np.asarray(translation, dtype=np.float64)


@functools.lru_cache(maxsize=None)
def _imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Built once per device (no host wait per batch), as normal tensors usable in and out of inference mode.
    with torch.inference_mode(False):
        return (torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
                torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1))


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W with values 0..255 to ImageNet-normalised float32, ``(x / 255 - mean) / std`` in the
    reference's order of operations, on the batch's device. A float32 batch is normalised in place; a uint8 batch
    gives a new tensor."""
    if images.dtype != torch.float32:
        images = images.float()
    mean, std = _imagenet_stats(images.device)
    return images.div_(255.0).sub_(mean).div_(std)
