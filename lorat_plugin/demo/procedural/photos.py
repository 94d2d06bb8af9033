"""The photographs the procedural benchmark is cut from: scikit-image's bundled sample images (inside its wheel,
none fetched through pooch, so generation works offline). The train and test splits use disjoint photographs.
The train split can add seeded *synthetic textures* (``texture-000``, ...: see :func:`synthetic_texture`), since
nine photographs are few textures to learn matching from; the test split is always cut from real photographs.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Photograph:
    name: str  # our short name: LaSOT class folder and the "object_class" of GOT-10k's meta_info.ini
    loader: str  # the skimage.data function that returns it
    split: str
    description: str


PHOTOGRAPHS: dict[str, Photograph] = {p.name: p for p in (
    # train split: 5 colour + 4 grayscale photographs
    Photograph("astronaut", "astronaut", "train", "colour portrait of astronaut Eileen Collins (NASA)"),
    Photograph("chelsea", "chelsea", "train", "colour close-up of a tabby cat's face"),
    Photograph("coffee", "coffee", "train", "colour photo of a coffee cup on a saucer"),
    Photograph("rocket", "rocket", "train", "colour photo of a rocket on its launch pad at dusk"),
    Photograph("hubble", "hubble_deep_field", "train", "colour Hubble deep-field image of galaxies"),
    Photograph("camera", "camera", "train", "grayscale photo of a cameraman with a tripod"),
    Photograph("brick", "brick", "train", "grayscale photo of a brick wall"),
    Photograph("grass", "grass", "train", "grayscale photo of grass"),
    Photograph("page", "page", "train", "grayscale scan of a printed book page"),
    # test split: 3 colour + 5 grayscale photographs, none of them seen by the train split
    Photograph("motorcycle", "stereo_motorcycle", "test", "colour photo of a motorcycle in a workshop (left view)"),
    Photograph("ihc", "immunohistochemistry", "test", "colour microscope image of immunohistochemistry-stained tissue"),
    Photograph("retina", "retina", "test", "colour fundus photograph of a human retina"),
    Photograph("coins", "coins", "test", "grayscale photo of Greek coins on a flat background"),
    Photograph("gravel", "gravel", "test", "grayscale photo of gravel"),
    Photograph("moon", "moon", "test", "grayscale photo of the lunar surface"),
    Photograph("text", "text", "test", "grayscale photo of hand-written text on a board"),
    Photograph("cell", "cell", "test", "grayscale microscope image of a cell"),
)}


TEXTURE_PREFIX = "texture-"
TEXTURE_SIZE = (480, 640)  # H x W of a synthetic texture


def split_photographs(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return tuple(name for name, photo in PHOTOGRAPHS.items() if photo.split == split)


def texture_names(count: int) -> tuple[str, ...]:
    """The names of the first ``count`` synthetic textures (train split only)."""
    if count < 0:
        raise ValueError(f"the number of synthetic textures must be >= 0, got {count}")
    return tuple(f"{TEXTURE_PREFIX}{i:03d}" for i in range(count))


def _texture_index(name: str) -> int | None:
    if not name.startswith(TEXTURE_PREFIX) or not name[len(TEXTURE_PREFIX):].isdigit():
        return None
    return int(name[len(TEXTURE_PREFIX):])


def is_texture(name: str) -> bool:
    """True for the name of a synthetic texture (``texture-NNN``)."""
    return _texture_index(name) is not None


def photograph_split(name: str) -> str | None:
    """The split a photograph (or synthetic texture: train) belongs to; None for an unknown name."""
    if name in PHOTOGRAPHS:
        return PHOTOGRAPHS[name].split
    return "train" if is_texture(name) else None


def _skimage_data():
    try:
        import skimage.data
    except ImportError as e:  # the generator is part of the `demo` extra
        raise ImportError("the procedural benchmark is cut from scikit-image's bundled photographs: "
                          "pip install scikit-image (or lorat-plugin[demo])") from e
    return skimage.data


@lru_cache(maxsize=None)
def load_photograph(name: str) -> np.ndarray:
    """H x W x 3 uint8 RGB (grayscale photographs are replicated to three channels). Read-only, cached."""
    index = _texture_index(name)
    if index is not None:
        return synthetic_texture(index)
    if name not in PHOTOGRAPHS:
        raise ValueError(f"unknown photograph {name!r}; known: {', '.join(PHOTOGRAPHS)}")
    image = getattr(_skimage_data(), PHOTOGRAPHS[name].loader)()
    if isinstance(image, tuple):  # stereo_motorcycle -> (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)
    image.setflags(write=False)
    return image


@lru_cache(maxsize=None)
def horse_silhouette() -> np.ndarray:
    """The silhouette of a horse (skimage.data.horse), cropped to its extent: a real object outline used as a
    target mask in the train split. True = object."""
    mask = ~np.asarray(_skimage_data().horse(), dtype=bool)  # the file draws the horse black on white
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    mask = np.ascontiguousarray(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=None)
def coin_segments() -> tuple[tuple[tuple[int, int, int, int], np.ndarray], ...]:
    """The coins of ``skimage.data.coins`` segmented (Otsu threshold, hole filling, connected components):
    ((x, y, w, h) in the photograph, boolean mask of that box) per coin. Real segmented objects of the test split.
    Coins are convex, so each mask is its component's convex hull (dark relief inside a coin is not background)."""
    from scipy import ndimage
    from skimage.morphology import convex_hull_image

    gray = load_photograph("coins")[:, :, 0].astype(np.float32)
    foreground = ndimage.binary_opening(gray > _otsu(gray), iterations=2)
    foreground = ndimage.binary_fill_holes(foreground)
    labels, count = ndimage.label(foreground)
    segments = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        rows, cols = found
        h, w = rows.stop - rows.start, cols.stop - cols.start
        if min(h, w) < 20 or max(h, w) > 2.5 * min(h, w):  # specks and merged coins
            continue
        mask = np.ascontiguousarray(convex_hull_image(labels[rows, cols] == index))
        mask.setflags(write=False)
        segments.append(((cols.start, rows.start, w, h), mask))
    return tuple(segments)


def _otsu(gray: np.ndarray) -> float:
    histogram, edges = np.histogram(gray, bins=256, range=(0, 256))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(histogram)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(histogram * centres) / np.maximum(weight_low, 1)
    mean_high = (np.sum(histogram * centres) - np.cumsum(histogram * centres)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between))])


def _fractal_noise(rng: np.random.Generator, shape: tuple[int, int], octaves: int, base: int) -> np.ndarray:
    """Sum of bilinearly upsampled random grids, coarse to fine with halving amplitude; zero mean, unit std."""
    from scipy import ndimage

    h, w = shape
    total = np.zeros(shape, np.float32)
    for octave in range(octaves):
        cells = base * 2 ** octave
        grid = rng.standard_normal((cells * h // max(h, w) + 2, cells * w // max(h, w) + 2)).astype(np.float32)
        up = ndimage.zoom(grid, (h / (grid.shape[0] - 1), w / (grid.shape[1] - 1)), order=1)[:h, :w]
        total += up * 0.5 ** octave
    return (total - total.mean()) / (total.std() + 1e-6)


def _colourise(rng: np.random.Generator, field: np.ndarray) -> np.ndarray:
    """A scalar field through a random palette of 2-5 colours (piecewise linear)."""
    stops = int(rng.integers(2, 6))
    palette = rng.uniform(0, 255, (stops, 3)).astype(np.float32)
    t = np.clip((field - field.min()) / (np.ptp(field) + 1e-6), 0, 1) * (stops - 1)
    low = np.minimum(t.astype(np.int64), stops - 2)
    frac = (t - low)[..., None]
    return palette[low] * (1 - frac) + palette[low + 1] * frac


def _dead_leaves(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Overlapping discs, ellipses and rectangles with power-law sizes, each in a palette colour modulated by noise:
    the occlusion statistics of natural images without any image."""
    h, w = shape
    palette = rng.uniform(0, 255, (int(rng.integers(3, 12)), 3)).astype(np.float32)
    shading = [_fractal_noise(rng, shape, 4, int(rng.integers(2, 12))) for _ in range(2)]
    image = np.empty((h, w, 3), np.float32)
    image[:] = palette[0]
    for _ in range(int(rng.integers(120, 400))):
        r = float(np.exp(rng.uniform(np.log(4), np.log(0.25 * min(h, w)))))
        cx, cy = rng.uniform(-r, w + r), rng.uniform(-r, h + r)
        x0, x1 = int(max(cx - 1.5 * r, 0)), int(min(cx + 1.5 * r + 1, w))
        y0, y1 = int(max(cy - 1.5 * r, 0)), int(min(cy + 1.5 * r + 1, h))
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        angle, aspect = rng.uniform(0, np.pi), float(np.exp(rng.uniform(-0.7, 0.7)))
        u = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / (r * aspect)
        v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) * aspect / r
        inside = (u * u + v * v <= 1) if rng.random() < 0.6 else ((np.abs(u) <= 1) & (np.abs(v) <= 1))
        colour = palette[int(rng.integers(len(palette)))] + rng.normal(0, 12, 3).astype(np.float32)
        depth = float(rng.uniform(0, 60))
        texture = colour + depth * shading[int(rng.integers(2))][y0:y1, x0:x1, None]
        image[y0:y1, x0:x1][inside] = texture[inside]
    return image


def _grating(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), float(np.exp(rng.uniform(np.log(6), np.log(80))))
    warp = float(rng.uniform(0, 3)) * _fractal_noise(rng, shape, 3, 3)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period + warp
    field = np.sin(phase) + float(rng.uniform(0, 0.8)) * _fractal_noise(rng, shape, 5, 4)
    return _colourise(rng, field)


@lru_cache(maxsize=None)
def synthetic_texture(index: int) -> np.ndarray:
    """Synthetic texture ``index`` (``TEXTURE_SIZE``, H x W x 3 uint8, read-only): a dead-leaves collage (half of
    them), coloured fractal noise or a warped grating; a third converted to grayscale, some slightly blurred.
    A pure function of ``index``."""
    from scipy import ndimage

    rng = np.random.default_rng([0x7E47, int(index)])
    kind = rng.choice(["leaves", "noise", "grating"], p=[0.5, 0.3, 0.2])
    if kind == "leaves":
        image = _dead_leaves(rng, TEXTURE_SIZE)
    elif kind == "noise":
        image = _colourise(rng, _fractal_noise(rng, TEXTURE_SIZE, int(rng.integers(3, 7)), int(rng.integers(2, 10))))
    else:
        image = _grating(rng, TEXTURE_SIZE)
    if rng.random() < 0.33:
        image[:] = image.mean(axis=2, keepdims=True)
    spread = float(image.std())
    if spread < 25:  # e.g. a palette of equally bright colours turned gray: stretch, a flat image teaches nothing
        mean = image.mean(axis=(0, 1), keepdims=True)
        image = mean + (image - mean) * (float(rng.uniform(25, 60)) / max(spread, 1.0))
    sigma = float(rng.uniform(0, 1.2))
    if sigma > 0.4:
        image = ndimage.gaussian_filter(image, (sigma, sigma, 0))
    image = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))
    image.setflags(write=False)
    return image
