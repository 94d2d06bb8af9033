"""Sampling a sequence: which photographs, which challenges, and where every object is in every frame.

A plan is pure geometry (numpy, no pixels) that :mod:`.render` turns into frames. Each sequence has its own
generator seeded by ``(seed, split, index)``, so sequence ``i`` never depends on how many are generated. Boxes are
``x, y, w, h`` in continuous 0-based frame pixels and *amodal*: the tight box of the whole silhouette.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .photos import PHOTOGRAPHS, coin_segments, is_texture, load_photograph

SPLIT_CODES = {"train": 1, "test": 2}

# Probability that a sequence has each challenge; they are drawn independently.
CHALLENGES: dict[str, float] = {
    "camera_motion": 0.6,  # the background pans and shakes
    "fast_motion": 0.4,  # abrupt jumps of about one to two target sizes between consecutive frames
    "scale_change": 0.5,  # the target grows or shrinks by 1.6x to 2.5x
    "aspect_change": 0.4,  # the width/height ratio swings by about 1.35x to 1.7x
    "occlusion": 0.5,  # textured occluders cut from other photographs pass over the target, partly or fully
    "out_of_view": 0.25,  # the target leaves the frame for a while and comes back
    "distractors": 0.45,  # look-alikes: copies or neighbouring crops of the target's texture and shape
    "motion_blur": 0.4,  # blur along each object's motion, camera blur while panning
    "illumination": 0.5,  # lights dim or brighten, a moving light gradient, shadows on the target
}
SHAPES = ("rectangle", "ellipse", "rounded", "blob", "horse", "coin")


@dataclass
class Layer:
    """A textured object drawn over the background: a crop of a photograph cut out by a shape mask."""

    photo: str
    source: tuple[int, int, int, int]  # x, y, w, h of the texture in the photograph (pixels)
    shape: str  # one of SHAPES
    shape_params: tuple[float, ...]  # blob harmonics, rounded-corner radius, coin index
    flip: bool  # texture mirrored left-right
    boxes: np.ndarray  # T x 4 amodal boxes in the frame
    gain: np.ndarray  # T brightness factors of this object (shadows)
    exposure: float  # shutter time as a fraction of the frame interval: motion blur length = exposure * speed

    @property
    def centers(self) -> np.ndarray:
        return self.boxes[:, :2] + self.boxes[:, 2:] / 2


@dataclass
class ScenePlan:
    name: str
    split: str
    index: int
    seed: int
    size: tuple[int, int]  # frame width, height
    background: str
    camera: np.ndarray  # T x 3: photograph point at the frame centre (x, y) and zoom (frame px per photo px)
    camera_exposure: float
    target: Layer
    distractors: list[Layer]
    occluders: list[Layer]
    light_gain: np.ndarray  # T global brightness factors
    light_gradient: np.ndarray  # T x 2: strength and direction (radians) of a linear light gradient across the frame
    noise: float  # sensor noise standard deviation (grey levels)
    challenges: tuple[str, ...]
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.target.boxes)


def smooth_noise(rng: np.random.Generator, length: int, correlation: float, dims: int = 1) -> np.ndarray:
    """Gaussian-filtered white noise of unit standard deviation; ``correlation`` frames is the filter's sigma."""
    pad = int(3 * correlation) + 1
    white = rng.standard_normal((length + 2 * pad, dims))
    smooth = gaussian_filter1d(white, sigma=correlation, axis=0, mode="nearest")[pad:pad + length]
    # The variance of filtered unit white noise is 1 / (2 sqrt(pi) sigma): rescale by theory, not by the sample.
    smooth *= math.sqrt(2 * math.sqrt(math.pi) * correlation)
    return smooth if dims > 1 else smooth[:, 0]


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def trapezoid(length: int, start: int, ramp: int, plateau: int) -> np.ndarray:
    """0 -> 1 over ``ramp`` frames from ``start``, 1 for ``plateau`` frames, back to 0 over ``ramp`` frames."""
    t = np.arange(length, dtype=np.float64)
    rise = smoothstep((t - start + 1) / max(ramp, 1))
    fall = 1 - smoothstep((t - start - ramp - plateau + 1) / max(ramp, 1))
    return np.minimum(rise, fall)


def fold(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Reflect values into [low, high] like a ball bouncing between two walls."""
    span = np.maximum(high - low, 1e-6)
    phase = np.mod(values - low, 2 * span)
    return low + np.where(phase > span, 2 * span - phase, phase)


def _event_frame(rng: np.random.Generator, frames: int, low: float, high: float) -> int:
    """A frame in [low*T, high*T], never among the first frames (the first frame initialises the tracker)."""
    first = max(3, int(low * frames))
    last = max(first + 1, int(high * frames))
    return int(rng.integers(first, last))


TEXTURE_SHARE = 0.5  # with synthetic textures in the list, the chance that a pick is one of them


def _pick_photo(rng: np.random.Generator, photos: list[str]) -> str:
    """A photograph from ``photos``: one uniform draw, or, when the list mixes real photographs and synthetic
    textures, a texture with probability :data:`TEXTURE_SHARE` (however many there are)."""
    textures = [p for p in photos if is_texture(p)]
    if not textures or len(textures) == len(photos):
        return str(rng.choice(photos))
    real = [p for p in photos if not is_texture(p)]
    return str(rng.choice(textures if rng.random() < TEXTURE_SHARE else real))


def _texture_source(rng: np.random.Generator, photo: str, aspect: float) -> tuple[int, int, int, int]:
    """A crop of the photograph with visible texture (flat sky or black space makes a poor target)."""
    image = load_photograph(photo)
    ph, pw = image.shape[:2]
    best, best_score = None, -1.0
    for _ in range(24):
        side = rng.uniform(0.18, 0.5) * min(pw, ph)
        w = int(round(min(pw - 2, side * math.sqrt(aspect))))
        h = int(round(min(ph - 2, side / math.sqrt(aspect))))
        x = int(rng.integers(0, pw - w + 1))
        y = int(rng.integers(0, ph - h + 1))
        crop = image[y:y + h:4, x:x + w:4].astype(np.float32)
        score = float(crop.std(axis=(0, 1)).mean())
        if score > best_score:
            best, best_score = (x, y, w, h), score
        if score >= 24.0:
            break
    return best


def _shape(rng: np.random.Generator, photo: str, split: str) -> tuple[str, tuple[float, ...]]:
    if photo == "coins" and rng.random() < 0.8:
        return "coin", (float(rng.integers(len(coin_segments()))),)
    names = ["rectangle", "ellipse", "rounded", "blob"] + (["horse"] if split == "train" else [])
    weights = np.array([0.25, 0.2, 0.2, 0.25, 0.1][:len(names)])
    shape = str(rng.choice(names, p=weights / weights.sum()))
    if shape == "rounded":
        return shape, (float(rng.uniform(0.15, 0.45)),)
    if shape == "blob":
        return shape, tuple(float(v) for k in range(2, 6) for v in (rng.uniform(0, 0.22 / (k - 1)),
                                                                    rng.uniform(0, 2 * math.pi)))
    return shape, ()


def _appearance(rng: np.random.Generator, photo: str, split: str, aspect: float) -> dict:
    shape, params = _shape(rng, photo, split)
    if shape == "coin":
        source, _ = coin_segments()[int(params[0])]
    else:
        source = _texture_source(rng, photo, aspect)
    return {"photo": photo, "source": tuple(int(v) for v in source), "shape": shape, "shape_params": params,
            "flip": bool(rng.random() < 0.5)}


def _sizes(rng: np.random.Generator, frames: int, base: float, log_aspect: float, scale_change: bool,
           aspect_change: bool, unit: float, size: tuple[int, int]) -> np.ndarray:
    """T x 2 widths and heights: slow wobble, plus a zoom ramp and an aspect swing when asked for."""
    log_scale = math.log(base) + 0.1 * smooth_noise(rng, frames, 12)
    if scale_change:
        start = _event_frame(rng, frames, 0.1, 0.6)
        duration = max(3, int(rng.uniform(0.15, 0.4) * frames))
        amount = math.log(rng.uniform(1.6, 2.5)) * rng.choice([-1, 1])
        log_scale += amount * smoothstep((np.arange(frames) - start) / duration)
    log_scale = np.clip(log_scale, math.log(0.07 * unit), math.log(0.42 * unit))
    log_ratio = log_aspect + 0.08 * smooth_noise(rng, frames, 10)
    if aspect_change:
        start = _event_frame(rng, frames, 0.1, 0.6)
        ramp = max(2, int(rng.uniform(0.08, 0.2) * frames))
        plateau = int(rng.integers(0, max(1, frames // 5)))
        log_ratio += rng.uniform(0.3, 0.55) * rng.choice([-1, 1]) * trapezoid(frames, start, ramp, plateau)
    scale = np.exp(log_scale)
    wh = np.stack([scale * np.exp(log_ratio / 2), scale * np.exp(-log_ratio / 2)], axis=1)
    return np.minimum(wh, 0.7 * np.asarray(size, dtype=np.float64))


def _trajectory(rng: np.random.Generator, frames: int, wh: np.ndarray, size: tuple[int, int], unit: float,
                start: np.ndarray | None, speed: float, jumps: int) -> np.ndarray:
    """T x 2 centres: smooth wandering that bounces off the frame borders, with abrupt jumps."""
    width, height = size
    if start is None:
        start = np.array([rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height])
    drift = rng.standard_normal(2)
    drift *= 0.5 * speed / max(np.linalg.norm(drift), 1e-6)
    velocity = speed * smooth_noise(rng, frames, 8, dims=2) + drift
    velocity[0] = 0.0
    offsets = np.cumsum(velocity, axis=0)
    for _ in range(jumps):
        at = _event_frame(rng, frames, 0.1, 0.95)
        angle = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.8, 2.0) * math.sqrt(wh[at, 0] * wh[at, 1])
        offsets[at:] += length * np.array([math.cos(angle), math.sin(angle)])
    free = start + offsets
    margin = 0.55 * wh
    low, high = margin, np.asarray(size, dtype=np.float64) - margin
    return fold(free, low, high)


def _leave_frame(rng: np.random.Generator, centers: np.ndarray, wh: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Push the object out through its nearest border, keep it out for a few frames, let it come back."""
    frames = len(centers)
    start = _event_frame(rng, frames, 0.25, 0.7)
    ramp = int(rng.integers(3, 8))
    plateau = int(rng.integers(2, max(3, frames // 8)))
    bump = trapezoid(frames, start, ramp, plateau)
    at = min(start + ramp, frames - 1)
    x, y = centers[at]
    width, height = size
    edge = int(np.argmin([x, width - x, y, height - y]))  # left, right, top, bottom
    out = centers.copy()
    if edge == 0:
        out[:, 0] -= bump * (centers[:, 0] + 0.6 * wh[:, 0])
    elif edge == 1:
        out[:, 0] += bump * (width - centers[:, 0] + 0.6 * wh[:, 0])
    elif edge == 2:
        out[:, 1] -= bump * (centers[:, 1] + 0.6 * wh[:, 1])
    else:
        out[:, 1] += bump * (height - centers[:, 1] + 0.6 * wh[:, 1])
    return out


def _boxes(centers: np.ndarray, wh: np.ndarray) -> np.ndarray:
    return np.concatenate([centers - wh / 2, wh], axis=1)


def _overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> float:
    """Fraction of box b covered by box a grown by ``margin`` pixels on every side."""
    x0, y0 = max(a[0] - margin, b[0]), max(a[1] - margin, b[1])
    x1, y1 = min(a[0] + a[2] + margin, b[0] + b[2]), min(a[1] + a[3] + margin, b[1] + b[3])
    return max(0.0, x1 - x0) * max(0.0, y1 - y0) / max(b[2] * b[3], 1e-9)


def plan_sequence(*, split: str, index: int, seed: int, frames: int, size: tuple[int, int],
                  photographs: tuple[str, ...], name: str) -> ScenePlan:
    if frames < 2:
        raise ValueError(f"a sequence needs at least 2 frames, got {frames}")
    if len(photographs) < 2:
        raise ValueError("the generator needs at least two photographs (target and background)")
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    width, height = size
    unit = float(min(width, height))
    challenges = tuple(c for c, p in CHALLENGES.items() if rng.random() < p)
    has = set(challenges).__contains__
    photos = list(photographs)

    target_photo = _pick_photo(rng, photos)
    background = _pick_photo(rng, [p for p in photos if p != target_photo])
    others = [p for p in photos if p not in (target_photo, background)] or [background]

    # the target
    log_aspect = float(rng.uniform(-0.55, 0.55))
    look = _appearance(rng, target_photo, split, math.exp(log_aspect))
    if look["shape"] == "coin":  # a segmented coin keeps its own proportions
        log_aspect = math.log(look["source"][2] / look["source"][3])
    exposure = float(rng.uniform(0.5, 1.0)) if has("motion_blur") else 0.0
    wh = _sizes(rng, frames, rng.uniform(0.12, 0.28) * unit, log_aspect, has("scale_change"), has("aspect_change"),
                unit, size)
    speed = rng.uniform(0.003, 0.02) * unit
    jumps = int(rng.integers(1, 4)) if has("fast_motion") else 0
    centers = _trajectory(rng, frames, wh, size, unit, None, speed, jumps)
    if has("out_of_view") and frames >= 12:
        centers = _leave_frame(rng, centers, wh, size)
    gain = np.exp(0.05 * smooth_noise(rng, frames, 10))
    if has("illumination"):  # a shadow passes over the target
        gain *= np.exp(-rng.uniform(0.3, 0.7) * trapezoid(frames, _event_frame(rng, frames, 0.1, 0.8),
                                                          int(rng.integers(2, 6)), int(rng.integers(2, 12))))
    target = Layer(boxes=_boxes(centers, wh), gain=gain, exposure=exposure, **look)

    distractors = [_distractor(rng, target, split, size, unit, exposure)
                   for _ in range(int(rng.integers(1, 4)))] if has("distractors") else []
    occluders = [_occluder(rng, target, others, split, size, exposure)
                 for _ in range(1 if rng.random() < 0.6 else 2)] if has("occlusion") else []
    occluders = [o for o in occluders if o is not None]

    camera = _camera(rng, frames, background, size, has("camera_motion"))
    light_gain = np.exp(0.06 * smooth_noise(rng, frames, 15))
    light_gradient = np.zeros((frames, 2))
    if has("illumination"):
        change = _event_frame(rng, frames, 0.15, 0.85)
        # lights dim to 0.5-0.7x or brighten to 1.3-1.5x, quickly or over a few frames
        amount = -rng.uniform(0.35, 0.7) if rng.random() < 0.5 else rng.uniform(0.25, 0.4)
        light_gain *= np.exp(amount * smoothstep((np.arange(frames) - change) / rng.uniform(1, 8)))
        light_gradient[:, 0] = rng.uniform(0.2, 0.5)
        light_gradient[:, 1] = rng.uniform(0, 2 * math.pi) + np.cumsum(np.full(frames, rng.uniform(-0.08, 0.08)))
    noise = float(rng.uniform(0.0, 3.0))
    attributes = {
        "target_photo": target_photo, "background_photo": background, "target_shape": target.shape,
        "distractor_count": str(len(distractors)), "occluder_photos": ",".join(o.photo for o in occluders) or "none",
        "challenges": ",".join(challenges) or "none",
    }
    return ScenePlan(name=name, split=split, index=index, seed=seed, size=(width, height), background=background,
                     camera=camera, camera_exposure=exposure, target=target, distractors=distractors,
                     occluders=occluders, light_gain=light_gain, light_gradient=light_gradient, noise=noise,
                     challenges=challenges, attributes=attributes)


def _distractor(rng: np.random.Generator, target: Layer, split: str, size: tuple[int, int], unit: float,
                exposure: float) -> Layer:
    """A look-alike: the target's own texture (same crop or a neighbouring one) and shape family."""
    frames = len(target.boxes)
    x, y, w, h = target.source
    if target.shape == "coin":  # another coin from the same photograph
        shape, params = "coin", (float(rng.integers(len(coin_segments()))),)
        source = coin_segments()[int(params[0])][0]
    else:
        shape, params = target.shape, target.shape_params
        if target.shape == "blob":  # same family, different outline
            params = tuple(v + rng.normal(0, 0.03) for v in params)
        if rng.random() < 0.5:
            source = (x, y, w, h)
        else:
            ph, pw = load_photograph(target.photo).shape[:2]
            angle = rng.uniform(0, 2 * math.pi)
            shift = rng.uniform(0.3, 1.0)
            nx = int(np.clip(x + shift * w * math.cos(angle), 0, pw - w))
            ny = int(np.clip(y + shift * h * math.sin(angle), 0, ph - h))
            source = (nx, ny, w, h)
    factor = math.exp(rng.normal(0, 0.15))
    wh = np.minimum(target.boxes[:, 2:] * factor, 0.7 * np.asarray(size, dtype=np.float64))
    start_at = target.centers[0]
    for _ in range(10):  # start clear of the target, at one to three sizes from it
        angle = rng.uniform(0, 2 * math.pi)
        distance = rng.uniform(1.2, 3.0) * math.sqrt(wh[0, 0] * wh[0, 1])
        start = start_at + distance * np.array([math.cos(angle), math.sin(angle)])
        start = np.clip(start, 0.55 * wh[0], np.asarray(size) - 0.55 * wh[0])
        if _overlap(_boxes(start[None], wh[:1])[0], target.boxes[0]) == 0:
            break
    centers = _trajectory(rng, frames, wh, size, unit, start, rng.uniform(0.003, 0.02) * unit, 0)
    gain = target.gain * math.exp(rng.normal(0, 0.08))
    return Layer(photo=target.photo, source=tuple(int(v) for v in source), shape=shape, shape_params=params,
                 flip=bool(rng.random() < 0.5) if rng.random() < 0.5 else target.flip,
                 boxes=_boxes(centers, wh), gain=gain, exposure=exposure)


def _occluder(rng: np.random.Generator, target: Layer, photos: list[str], split: str, size: tuple[int, int],
              exposure: float) -> Layer | None:
    """A textured object from another photograph that crosses (or sits on) the target's path."""
    frames = len(target.boxes)
    if frames < 8:
        return None
    for _ in range(10):
        cross = _event_frame(rng, frames, 0.2, 0.9)
        full = rng.random() < 0.5
        factor = rng.uniform(1.3, 2.0, size=2) if full else rng.uniform(0.7, 1.5, size=2)
        wh_cross = target.boxes[cross, 2:] * factor
        reach = (wh_cross + target.boxes[cross, 2:]) / 2
        if full:
            offset = rng.uniform(-0.1, 0.1, size=2) * reach
        else:
            angle = rng.uniform(0, 2 * math.pi)
            offset = rng.uniform(0.35, 0.8) * reach * np.array([math.cos(angle), math.sin(angle)])
        at = target.centers[cross] + offset
        t = np.arange(frames, dtype=np.float64)[:, None] - cross
        if rng.random() < 0.35:  # a static occluder: the target moves behind it
            centers = at + 0.002 * min(size) * smooth_noise(rng, frames, 10, dims=2)
        else:
            angle = rng.uniform(0, 2 * math.pi)
            direction = np.array([math.cos(angle), math.sin(angle)])
            crossing_time = rng.uniform(8, 20)
            speed = float(np.abs(direction) @ (wh_cross + target.boxes[cross, 2:])) / crossing_time
            centers = at + t * speed * direction
        wh = np.repeat(wh_cross[None], frames, axis=0)
        boxes = _boxes(centers, wh)
        # the first frames show the whole target: clear of the occluder by 2 px (its antialiased edge)
        if _overlap(boxes[0], target.boxes[0], 2.0) == 0 and _overlap(boxes[1], target.boxes[1], 2.0) == 0:
            photo = _pick_photo(rng, photos)
            look = _appearance(rng, photo, split, float(factor[0] / factor[1]))
            return Layer(boxes=boxes, gain=np.ones(frames), exposure=exposure, **look)
    return None


def _camera(rng: np.random.Generator, frames: int, photo: str, size: tuple[int, int], moving: bool) -> np.ndarray:
    """Where the frame looks in the background photograph: centre (x, y) in photo pixels and zoom."""
    ph, pw = load_photograph(photo).shape[:2]
    width, height = size
    # The frame sees at most 75% of the photograph along each axis, so the camera has room to pan.
    zoom0 = max(width / (0.75 * pw), height / (0.75 * ph)) * rng.uniform(1.0, 1.6)
    zoom = zoom0 * np.exp((0.08 if moving else 0.01) * smooth_noise(rng, frames, 20))
    speed = rng.uniform(0.004, 0.025) * min(size) if moving else 0.0005 * min(size)
    velocity = speed * smooth_noise(rng, frames, 10, dims=2) / zoom[:, None]
    if moving and rng.random() < 0.5:  # hand-held shake
        velocity += 0.006 * min(size) * rng.standard_normal((frames, 2)) / zoom[:, None]
    start = np.array([rng.uniform(0.4, 0.6) * pw, rng.uniform(0.4, 0.6) * ph])
    half = np.stack([width / (2 * zoom), height / (2 * zoom)], axis=1)
    centers = fold(start + np.cumsum(velocity, axis=0), half, np.array([pw, ph]) - half)
    return np.concatenate([centers, zoom[:, None]], axis=1)


__all__ = ["CHALLENGES", "SHAPES", "Layer", "ScenePlan", "plan_sequence", "smooth_noise", "PHOTOGRAPHS"]
