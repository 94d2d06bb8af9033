"""Turning a :class:`ScenePlan` into frames and exact labels.

Each object is a premultiplied RGBA sprite (photograph crop x shape mask) warped exactly onto its box. Layers,
bottom to top: background (camera pan/zoom), distractors, target, occluders; then light, sensor noise. The visible
fraction is measured on the unblurred target mask; below :data:`MIN_VISIBLE` the target is labelled absent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .photos import coin_segments, horse_silhouette, load_photograph
from .plan import SPLIT_CODES, Layer, ScenePlan

MIN_VISIBLE = 0.05  # below this visible fraction the target is labelled absent (cover 0)
# GOT-10k's cover label: 0 absent, 1..7 visible fraction in (0,15%], (15,30%], ..., [90,100%), 8 fully visible
COVER_EDGES = (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)
FULLY_VISIBLE = 0.99  # resampling makes a fully visible target's measured fraction 0.995-1.0


@dataclass
class RenderedFrame:
    image: np.ndarray  # H x W x 3 uint8 RGB
    box: np.ndarray | None  # ground truth x, y, w, h: the amodal box clipped to the frame; None when absent
    amodal_box: np.ndarray  # the whole object's box, possibly outside the frame
    visible_fraction: float  # of the target's pixels: in the frame and not behind an occluder
    in_frame_fraction: float  # of the target's pixels: in the frame (occluders ignored)
    frame_size: tuple[int, int] = (0, 0)  # W, H
    target_alpha: np.ndarray | None = None  # H x W unblurred target coverage before occlusion (with_masks=True)
    occluder_alpha: np.ndarray | None = None  # H x W coverage by the occluders (with_masks=True)

    @property
    def present(self) -> bool:
        return self.box is not None

    @property
    def cover(self) -> int:
        if not self.present:
            return 0
        if self.visible_fraction >= FULLY_VISIBLE:
            return 8
        return 1 + int(np.searchsorted(COVER_EDGES, self.visible_fraction, side="left"))

    @property
    def cut_by_image(self) -> bool:
        """Part of the target's box lies outside the frame (the box written is clipped)."""
        if not self.present:
            return False
        x, y, w, h = self.amodal_box
        return bool(x < 0 or y < 0 or x + w > self.frame_size[0] or y + h > self.frame_size[1])

    @property
    def out_of_view(self) -> bool:
        return self.in_frame_fraction < MIN_VISIBLE

    @property
    def full_occlusion(self) -> bool:
        return not self.present and not self.out_of_view


def _polygon_mask(points: np.ndarray, width: int, height: int, supersample: int = 4) -> np.ndarray:
    """Coverage in [0, 1] of a polygon given in continuous pixel coordinates of a width x height grid."""
    import cv2

    canvas = np.zeros((height * supersample, width * supersample), dtype=np.uint8)
    # A continuous coordinate c lies in supersampled pixel index c * s - 0.5; fillPoly takes fixed point (shift 4).
    fixed = np.round((points * supersample - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [fixed], 255, lineType=cv2.LINE_8, shift=4)
    return cv2.resize(canvas.astype(np.float32) / 255.0, (width, height), interpolation=cv2.INTER_AREA)


def shape_mask(shape: str, params: tuple[float, ...], width: int, height: int) -> np.ndarray:
    """The object's silhouette on a width x height grid; every shape touches all four sides of the grid, so the
    sprite's extent is the object's extent."""
    import cv2

    if shape == "rectangle":
        return np.ones((height, width), dtype=np.float32)
    if shape in ("horse", "coin"):
        mask = horse_silhouette() if shape == "horse" else coin_segments()[int(params[0])][1]
        return cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    angles = np.linspace(0, 2 * math.pi, 160, endpoint=False)
    if shape == "ellipse":
        xs, ys = np.cos(angles), np.sin(angles)
    elif shape == "blob":
        radius = np.ones_like(angles)
        for k, (amplitude, phase) in enumerate(zip(params[0::2], params[1::2]), start=2):
            radius += amplitude * np.cos(k * angles + phase)
        xs, ys = radius * np.cos(angles), radius * np.sin(angles)
    elif shape == "rounded":
        # a superellipse is a rounded rectangle whose corner radius shrinks as the exponent grows
        exponent = 2 + 8 * (1 - params[0])
        c, s = np.cos(angles), np.sin(angles)
        xs = np.sign(c) * np.abs(c) ** (2 / exponent)
        ys = np.sign(s) * np.abs(s) ** (2 / exponent)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    # stretch the outline so that it spans the grid exactly
    xs = (xs - xs.min()) / (xs.max() - xs.min()) * width
    ys = (ys - ys.min()) / (ys.max() - ys.min()) * height
    return _polygon_mask(np.stack([xs, ys], axis=1), width, height)


class Sprite:
    """A layer's texture and mask, premultiplied, with a half-resolution copy for small renderings."""

    def __init__(self, layer: Layer):
        import cv2

        max_w, max_h = layer.boxes[:, 2].max(), layer.boxes[:, 3].max()
        width, height = max(8, int(math.ceil(max_w))), max(8, int(math.ceil(max_h)))
        x, y, w, h = layer.source
        crop = load_photograph(layer.photo)[y:y + h, x:x + w]
        shrink = width < w or height < h
        texture = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        mask = shape_mask(layer.shape, layer.shape_params, width, height)
        if layer.flip:
            texture, mask = texture[:, ::-1], mask[:, ::-1]
        rgba = np.empty((height, width, 4), dtype=np.float32)
        rgba[:, :, :3] = texture.astype(np.float32) * mask[:, :, None]
        rgba[:, :, 3] = mask
        self.levels = [rgba]
        if min(width, height) >= 16:
            self.levels.append(cv2.resize(rgba, (width // 2, height // 2), interpolation=cv2.INTER_AREA))
        self.mask_fill = float(mask.mean())  # the silhouette's share of its box, to measure visibility

    def level_for(self, w: float, h: float) -> np.ndarray:
        full = self.levels[0]
        if len(self.levels) > 1 and w < 0.5 * full.shape[1] and h < 0.5 * full.shape[0]:
            return self.levels[1]
        return full


def _warp(sprite: np.ndarray, box: np.ndarray, size: tuple[int, int], pad: int) -> tuple[np.ndarray, int, int] | None:
    """Warp a sprite onto ``box`` (continuous coordinates); returns the touched region of the frame and its origin."""
    import cv2

    width, height = size
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, int(math.floor(x)) - pad), max(0, int(math.floor(y)) - pad)
    x1, y1 = min(width, int(math.ceil(x + w)) + pad), min(height, int(math.ceil(y + h)) + pad)
    if x1 <= x0 or y1 <= y0:
        return None
    sh, sw = sprite.shape[:2]
    kx, ky = w / sw, h / sh
    # Pixel index i has its centre at continuous i + 0.5: index_out = k * index_in + (x - 0.5 + 0.5 k) - x0.
    matrix = np.array([[kx, 0.0, x - 0.5 + 0.5 * kx - x0], [0.0, ky, y - 0.5 + 0.5 * ky - y0]])
    region = cv2.warpAffine(sprite, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if region.ndim == 2:
        region = region[:, :, None]
    return region, x0, y0


def _motion_kernel(dx: float, dy: float) -> np.ndarray | None:
    """A normalised line kernel along (dx, dy) pixels, or None when the blur is under a pixel and a half."""
    length = math.hypot(dx, dy)
    if length < 1.5:
        return None
    radius = int(math.ceil(length / 2)) + 1
    kernel = np.zeros((2 * radius + 1, 2 * radius + 1), dtype=np.float32)
    for t in np.linspace(-0.5, 0.5, int(math.ceil(length)) * 2 + 1):
        px, py = radius + t * dx, radius + t * dy
        ix, iy = int(math.floor(px)), int(math.floor(py))
        fx, fy = px - ix, py - iy
        kernel[iy, ix] += (1 - fx) * (1 - fy)
        kernel[iy, ix + 1] += fx * (1 - fy)
        kernel[iy + 1, ix] += (1 - fx) * fy
        kernel[iy + 1, ix + 1] += fx * fy
    return kernel / kernel.sum()


MAX_BLUR = 24.0  # px; an abrupt jump is a dropped stretch of motion, not a 100 px smear


def _composite(canvas: np.ndarray, sprite: Sprite, layer: Layer, frame: int, size: tuple[int, int]) -> None:
    import cv2

    box = layer.boxes[frame]
    kernel = None
    if layer.exposure > 0 and frame != 0:
        dx, dy = (layer.centers[frame] - layer.centers[frame - 1]) * layer.exposure
        length = math.hypot(dx, dy)
        if length > MAX_BLUR:
            dx, dy = dx * MAX_BLUR / length, dy * MAX_BLUR / length
        kernel = _motion_kernel(float(dx), float(dy))
    pad = 2 + (kernel.shape[0] // 2 if kernel is not None else 0)
    warped = _warp(sprite.level_for(box[2], box[3]), box, size, pad)
    if warped is None:
        return
    region, x0, y0 = warped
    if kernel is not None:
        region = cv2.filter2D(region, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    h, w = region.shape[:2]
    alpha = region[:, :, 3:4]
    view = canvas[y0:y0 + h, x0:x0 + w]
    view *= 1.0 - alpha
    view += region[:, :, :3] * float(layer.gain[frame])


def _coverage(sprite: Sprite, box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """H x W unblurred coverage of a layer's mask."""
    width, height = size
    full = np.zeros((height, width), dtype=np.float32)
    level = sprite.level_for(box[2], box[3])
    warped = _warp(np.ascontiguousarray(level[:, :, 3]), box, size, 2)
    if warped is not None:
        region, x0, y0 = warped
        full[y0:y0 + region.shape[0], x0:x0 + region.shape[1]] = region[:, :, 0]
    return full


def _background_source(plan: ScenePlan) -> tuple[np.ndarray, float]:
    """The background photograph, shrunk once when the camera sees it minified (warpAffine does not low-pass)."""
    import cv2

    photo = load_photograph(plan.background)
    least_zoom = float(plan.camera[:, 2].min())
    if least_zoom >= 0.7:
        return photo, 1.0
    factor = least_zoom * 1.25
    small = cv2.resize(photo, (max(1, round(photo.shape[1] * factor)), max(1, round(photo.shape[0] * factor))),
                       interpolation=cv2.INTER_AREA)
    return small, small.shape[1] / photo.shape[1]


def _background(plan: ScenePlan, source: tuple[np.ndarray, float], frame: int) -> np.ndarray:
    import cv2

    width, height = plan.size
    photo, factor = source
    cx, cy, zoom = plan.camera[frame]
    # Frame point W/2 + zoom (p - c) shows photograph point p; the source holds the photograph scaled by `factor`.
    k = zoom / factor
    matrix = np.array([[k, 0.0, width / 2 - zoom * cx - 0.5 + 0.5 * k],
                       [0.0, k, height / 2 - zoom * cy - 0.5 + 0.5 * k]])
    image = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    image = image.astype(np.float32)
    if plan.camera_exposure > 0 and frame > 0:
        shift = (plan.camera[frame, :2] - plan.camera[frame - 1, :2]) * zoom * plan.camera_exposure
        kernel = _motion_kernel(float(shift[0]), float(shift[1]))
        if kernel is not None:
            image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return image


def render_sequence(plan: ScenePlan, *, with_masks: bool = False) -> Iterator[RenderedFrame]:
    """Render every frame of a plan, in order. ``with_masks`` also returns the target and occluder coverage."""
    width, height = plan.size
    target_sprite = Sprite(plan.target)
    distractor_sprites = [Sprite(layer) for layer in plan.distractors]
    occluder_sprites = [Sprite(layer) for layer in plan.occluders]
    background = _background_source(plan)
    noise_rng = np.random.default_rng([plan.seed, SPLIT_CODES[plan.split], plan.index, 7919])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = (xs + 0.5) / width - 0.5, (ys + 0.5) / height - 0.5
    for frame in range(plan.frames):
        canvas = _background(plan, background, frame)
        for sprite, layer in zip(distractor_sprites, plan.distractors):
            _composite(canvas, sprite, layer, frame, plan.size)
        _composite(canvas, target_sprite, plan.target, frame, plan.size)
        occluded = np.zeros((height, width), dtype=np.float32)
        for sprite, layer in zip(occluder_sprites, plan.occluders):
            _composite(canvas, sprite, layer, frame, plan.size)
            occluded = 1.0 - (1.0 - occluded) * (1.0 - _coverage(sprite, layer.boxes[frame], plan.size))

        strength, direction = plan.light_gradient[frame]
        light = plan.light_gain[frame] * (1.0 + strength * (math.cos(direction) * xs + math.sin(direction) * ys))
        canvas *= light[:, :, None]
        if plan.noise > 0:
            canvas += noise_rng.standard_normal(canvas.shape, dtype=np.float32) * plan.noise
        image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)

        amodal = plan.target.boxes[frame]
        target_cover = _coverage(target_sprite, amodal, plan.size)
        total = target_sprite.mask_fill * amodal[2] * amodal[3]
        in_frame = float(min(1.0, target_cover.sum() / total))
        visible = float(min(1.0, (target_cover * (1.0 - occluded)).sum() / total))
        box = _clip(amodal, plan.size) if visible >= MIN_VISIBLE else None
        yield RenderedFrame(image=image, box=box, amodal_box=amodal.copy(), visible_fraction=visible,
                            in_frame_fraction=in_frame, frame_size=plan.size,
                            target_alpha=target_cover if with_masks else None,
                            occluder_alpha=occluded if with_masks else None)


def _clip(box: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    width, height = size
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        return None
    return np.array([x0, y0, x1 - x0, y1 - y0])


__all__ = ["RenderedFrame", "render_sequence", "shape_mask", "MIN_VISIBLE", "COVER_EDGES"]
