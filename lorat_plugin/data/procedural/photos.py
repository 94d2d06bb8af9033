"""The photographs the procedural benchmark is cut from: scikit-image's bundled sample images.

Every image used here ships inside the scikit-image wheel itself (``skimage/data/*.png|jpg``); none is fetched
through pooch, so generation works offline. The training and test splits use disjoint photographs, so a model
trained on the train split is evaluated on textures and scenes it never saw. (``stereo_motorcycle`` is a stereo
pair; only its left view is used, and only by the test split.)
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


def split_photographs(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return tuple(name for name, photo in PHOTOGRAPHS.items() if photo.split == split)


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
    threshold = _otsu(gray)
    foreground = ndimage.binary_opening(gray > threshold, iterations=2)
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
