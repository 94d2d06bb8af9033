"""How every output of one run shows its trackers and frames: the one palette and the one frame numbering.

Within one run (a report, a demo) the colours follow the order of the trackers: the n-th tracker gets the n-th
colour in the plots, in report.html's frame strips and in the demo video alike, because every output asks
:func:`tracker_colours` with the same ordered names. The ground truth is always :data:`GROUND_TRUTH`. The targets
of a multi-target run take their colours from the same cycle (:func:`target_colour`).

Frames are numbered as the benchmark's files number them (GOT-10k ``00000001.jpg`` is frame 1, TrackingNet
``0.jpg`` frame 0): :func:`frame_number`.

No dependency beyond the standard library, so every layer may use it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

RGB = tuple[int, int, int]

# Okabe & Ito's colour-blind-safe set (https://jfly.uni-koeln.de/color/), darkest yellow and black left out: each
# must show both on a white plot and over a photograph.
TRACKER_CYCLE: tuple[RGB, ...] = (
    (0, 114, 178),  # blue
    (230, 159, 0),  # orange
    (0, 158, 115),  # bluish green
    (213, 94, 0),  # vermillion
    (204, 121, 167),  # reddish purple
    (86, 180, 233),  # sky blue
    (240, 228, 66),  # yellow
    (110, 110, 110),  # grey
)
GROUND_TRUTH: RGB = (255, 255, 255)  # white: never one of the trackers'; outlined where the background is white
LEGEND_BACKGROUND: RGB = (24, 24, 24)  # behind the legend strip of a video: white and every colour show on it


def tracker_colour(index: int) -> RGB:
    """The colour of the ``index``-th tracker (0-based) of a run; the cycle repeats after eight."""
    return TRACKER_CYCLE[index % len(TRACKER_CYCLE)]


def tracker_colours(names: Iterable[str]) -> dict[str, RGB]:
    """name -> colour, in the order given (the run's order of trackers); a name given twice keeps its first."""
    colours: dict[str, RGB] = {}
    for name in names:
        if name not in colours:
            colours[name] = tracker_colour(len(colours))
    return colours


def target_colour(target: int) -> RGB:
    """The colour of target ``target`` (0-based) of a multi-target run: the tracker cycle, by target."""
    return tracker_colour(target)


def hex_colour(colour: RGB) -> str:
    """``#rrggbb`` for HTML."""
    return "#{:02x}{:02x}{:02x}".format(*colour)


def unit_colour(colour: RGB) -> tuple[float, float, float]:
    """0..1 components, as matplotlib takes them."""
    return tuple(channel / 255 for channel in colour)


def frame_number(path: str | Path, index: int) -> int:
    """The number of frame ``index`` (0-based position) as its file names it: the last run of digits of the
    file's stem (``00000001.jpg`` -> 1, ``0.jpg`` -> 0); a name without digits (a video) counts from 1."""
    digits = re.findall(r"\d+", Path(path).stem)
    return int(digits[-1]) if digits else index + 1


def numbering_note(first_frame_number: int) -> str:
    """How frames are numbered, said once beside a legend."""
    return f"frame numbers as in the files (first: {first_frame_number})"
