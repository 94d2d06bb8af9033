"""One training sample from a template frame and a search frame: SiamFC crops (jitter on the search side only),
augmentations, the template foreground mask and the search labels.

Crops come from :mod:`lorat_plugin.geometry` (the pixel-aligned crop the tracker uses) with each frame's mean
colour as padding, and the box is mapped through the transform the crop actually realised. Output images are
uint8 (the reference's 3-augment round-trips through 8-bit PIL images too); ImageNet normalisation happens on the
training device, which moves a quarter of the bytes through worker queues and host-to-device copies.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..geometry import apply_transform, clip_box, context_scale, crop_image, crop_transform, template_mask
from ..model.config import ModelConfig
from . import augment
from .config import DataSection
from .labels import normalized_box, positive_cells


@dataclass(frozen=True)
class PairRecipe:
    """Crop geometry (from the model) and the jitter / augmentation settings (from the data section)."""

    template_size: int
    search_size: int
    template_grid: int
    search_grid: int
    template_factor: float
    search_factor: float
    scale_jitter: float = DataSection.scale_jitter
    translation_jitter: float = DataSection.translation_jitter
    min_object_size: float = DataSection.min_object_size
    crop_attempts: int = DataSection.crop_attempts
    flip_probability: float = DataSection.flip_probability
    brightness: float = DataSection.brightness
    contrast: float = DataSection.contrast
    saturation: float = DataSection.saturation
    three_augment: bool = DataSection.three_augment

    @classmethod
    def create(cls, model: ModelConfig, data: DataSection) -> "PairRecipe":
        settings = {f.name: getattr(data, f.name) for f in dataclasses.fields(cls) if hasattr(data, f.name)}
        return cls(template_size=model.template_size, search_size=model.search_size,
                   template_grid=model.template_grid, search_grid=model.search_grid,
                   template_factor=model.template_area_factor, search_factor=model.search_area_factor, **settings)


def jittered_search_transform(box: np.ndarray, recipe: PairRecipe, rng: np.random.Generator
                              ) -> tuple[np.ndarray, np.ndarray] | None:
    """A search crop transform with per-axis scale jitter and a shift, or None when ``crop_attempts`` draws all
    leave the target outside the crop or smaller than ``min_object_size`` after clipping (the pair is resampled)."""
    size = recipe.search_size
    base = context_scale(box, recipe.search_factor, size)
    wh = box[2:] - box[:2]
    for _ in range(recipe.crop_attempts):
        scale = base / np.exp(rng.standard_normal(2) * recipe.scale_jitter)
        scale, translation = crop_transform(box, recipe.search_factor, size, scale=scale)
        reach = 0.5 * float((wh * scale).sum()) * recipe.translation_jitter
        translation = translation + rng.uniform(-1.0, 1.0, size=2) * reach
        out = apply_transform(box, scale, translation)
        if out[0] >= size or out[1] >= size or out[2] <= 0 or out[3] <= 0:
            continue  # no overlap with the crop
        clipped = clip_box(out, size, size)
        if np.all(clipped[2:] - clipped[:2] >= recipe.min_object_size):
            return scale, translation
    return None


def _crop(image: torch.Tensor, box: np.ndarray, scale: np.ndarray, translation: np.ndarray, size: int,
          fill: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    crop, real_scale, real_translation = crop_image(image, scale, translation, size, fill)
    return crop.div_(255.0), apply_transform(box, real_scale, real_translation)


def frame_fill(image: torch.Tensor) -> torch.Tensor:
    """Per-channel mean colour of a uint8 C x H x W frame (the padding colour)."""
    return image.float().mean(dim=(1, 2))


def make_pair(template_image: torch.Tensor, template_box: np.ndarray, search_image: torch.Tensor,
              search_box: np.ndarray, recipe: PairRecipe, rng: np.random.Generator) -> dict[str, torch.Tensor] | None:
    """Images are uint8 C x H x W, boxes x1 y1 x2 y2 in frame pixels (already clipped to the frame).
    Returns None when no valid search crop was drawn."""
    search_transform = jittered_search_transform(search_box, recipe, rng)
    if search_transform is None:
        return None
    z_fill = frame_fill(template_image)
    x_fill = z_fill if search_image is template_image else frame_fill(search_image)
    z_scale, z_translation = crop_transform(template_box, recipe.template_factor, recipe.template_size)
    z, z_box = _crop(template_image, template_box, z_scale, z_translation, recipe.template_size, z_fill)
    x, x_box = _crop(search_image, search_box, *search_transform, recipe.search_size, x_fill)

    # Flips: one draw per image (joint: false).
    if rng.random() < recipe.flip_probability:
        z, z_box = augment.hflip(z, z_box)
    if rng.random() < recipe.flip_probability:
        x, x_box = augment.hflip(x, x_box)
    if recipe.brightness or recipe.contrast or recipe.saturation:
        z = augment.color_jitter(z, rng, recipe.brightness, recipe.contrast, recipe.saturation)
        x = augment.color_jitter(x, rng, recipe.brightness, recipe.contrast, recipe.saturation)
    if recipe.three_augment:
        z, x = augment.three_augment([z, x], rng)

    z_box = clip_box(z_box, recipe.template_size, recipe.template_size)
    x_box = clip_box(x_box, recipe.search_size, recipe.search_size)
    return {
        "z": to_uint8(z), "x": to_uint8(x),
        "z_feat_mask": torch.from_numpy(template_mask(z_box, recipe.template_size, recipe.template_grid)),
        "positive": torch.from_numpy(positive_cells(x_box, recipe.search_size, recipe.search_grid)),
        "box": torch.from_numpy(normalized_box(x_box, recipe.search_size)),
    }


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    return image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
