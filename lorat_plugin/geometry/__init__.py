"""Geometry shared by inference and training: boxes, the pixel-aligned crop, token masks, image normalisation.

Depends on numpy and torch only, so a training DataLoader worker loads neither timm nor an inference backend."""
from .boxes import cell_mask, clip_box, rasterize, rect_iou, template_mask, xywh_to_xyxy, xyxy_to_xywh
from .crop import (IMAGENET_MEAN, IMAGENET_STD, apply_transform, context_scale, crop_image, crop_transform,
                   invert_transform, normalize_images)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "apply_transform", "cell_mask", "clip_box", "context_scale",
           "crop_image", "crop_transform", "invert_transform", "normalize_images", "rasterize", "rect_iou",
           "template_mask", "xywh_to_xyxy", "xyxy_to_xywh"]
