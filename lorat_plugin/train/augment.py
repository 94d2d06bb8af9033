"""The reference's augmentations, on float C x H x W crops in [0, 1], driven by one numpy Generator per sample.

Order (the reference's data pipeline, github.com/LitingLin/LoRAT): horizontal flip (template and search
independently, boxes follow), colour jitter (per image, brightness / contrast / saturation in random order), then
DeiT-III's 3-augment (one of grayscale, solarize, Gaussian blur, the same choice and parameters for both images).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF


def hflip(image: torch.Tensor, box: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Mirror the image left-right; x1, x2 of the (x1, y1, x2, y2) box become W - x2, W - x1."""
    width = image.shape[-1]
    x1, y1, x2, y2 = box
    return image.flip(-1), np.array((width - x2, y1, width - x1, y2), dtype=np.float64)


def color_jitter(image: torch.Tensor, rng: np.random.Generator, brightness: float, contrast: float,
                 saturation: float) -> torch.Tensor:
    """torchvision's ColorJitter (no hue) with factors uniform in [1 - v, 1 + v], applied in a random order."""
    order = rng.permutation(3)
    factors = [float(rng.uniform(1 - v, 1 + v)) if v > 0 else None for v in (brightness, contrast, saturation)]
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for index in order:
        if factors[index] is not None:
            image = ops[index](image, factors[index])
    return image


def three_augment(images: list[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
    """DeiT-III: grayscale (3 channels), solarize (threshold 128/255) or blur (sigma uniform in [0.1, 2]),
    chosen with equal probability and applied identically to every image."""
    choice = int(rng.integers(3))
    if choice == 0:
        return [TF.rgb_to_grayscale(img, num_output_channels=3) for img in images]
    if choice == 1:
        return [TF.solarize(img, threshold=128 / 255) for img in images]
    sigma = float(rng.uniform(0.1, 2.0))
    out = []
    for img in images:
        # PIL's GaussianBlur radius is the standard deviation; a +-3 sigma kernel, no larger than the image.
        size = min(2 * math.ceil(3 * sigma) + 1, (min(img.shape[-2:]) - 1) | 1)
        out.append(TF.gaussian_blur(img, kernel_size=[size, size], sigma=[sigma, sigma]))
    return out
