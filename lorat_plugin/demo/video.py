"""One sequence of the demo benchmark rendered with the ground truth and every tracker's box.

Above each frame a legend strip names every box: a swatch in each tracker's colour (``lorat_plugin.palette``, in
the order of the trackers, as the report's plots and frame strips) with its name, the ground truth's, and the frame
number as the benchmark's files count it. The strip lies outside the picture, so no box hides it.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.sequence import Sequence, read_image
from ..palette import GROUND_TRUTH, LEGEND_BACKGROUND, frame_number, numbering_note, tracker_colours

LEGEND_FONT = 13  # px, Pillow's own font (legible at the video's size; its bitmap fallback is about 11 px)
LEGEND_ROW = 20  # px per legend row
TEXT = (235, 235, 235)  # the legend's text, on the palette's legend background
SWATCH = 12  # px, side of a colour swatch
BOX_WIDTH = 4  # px: H.264 keeps colour per 2 x 2 pixels, so a line this wide keeps its colour at its centre
GAP = 14  # px between legend entries


@dataclass(frozen=True)
class LegendEntry:
    label: str
    colour: tuple[int, int, int]
    left: int  # x of the swatch
    row: int


def render_sequence_video(sequences: list[Sequence], results: list, name: str, folder: Path,
                          scale: int = 2, fps: float = 10.0) -> Path:
    """One sequence with the ground truth and every tracker's box drawn under a legend strip: MP4 when PyAV is
    installed, else GIF."""
    from PIL import Image

    from ..data.video import draw_boxes, write_video

    by_name = {s.name: s for s in sequences}
    if name not in by_name:
        raise ValueError(f"no sequence {name!r} in the demo benchmark; choose one of {', '.join(by_name)}")
    sequence = by_name[name]
    suffix = ".mp4" if importlib.util.find_spec("av") else ".gif"  # PyAV writes mp4; imageio falls back to GIF
    colours = tracker_colours(result.name for result in results)
    width = read_image(sequence.frames[0]).shape[1] * scale
    entries = legend_layout([("ground truth", GROUND_TRUTH), *colours.items()], width)
    numbering = numbering_note(frame_number(sequence.frames[0], 0))

    def frames():
        for index, path in enumerate(sequence.frames):
            image = read_image(path)
            height, frame_width = image.shape[:2]
            image = np.asarray(Image.fromarray(image).resize((frame_width * scale, height * scale), Image.BILINEAR))
            shown = int(sequence.visible[index])  # the ground truth, drawn unless the target is absent
            boxes, box_colours = [sequence.boxes[index] * scale] * shown, [GROUND_TRUTH] * shown
            for result in results:
                boxes.append(np.asarray(result.runs[name][0][index]) * scale)
                box_colours.append(colours[result.name])
            captions = [f"{name}  frame {frame_number(path, index)}", numbering]
            yield with_legend(draw_boxes(image, boxes, box_colours, thickness=BOX_WIDTH), entries, captions)

    return write_video(folder / f"{name}{suffix}", frames(), fps=fps)


def legend_font():
    """Pillow's bundled scalable font at :data:`LEGEND_FONT` px; its fixed bitmap font where FreeType is missing."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=LEGEND_FONT)
    except (TypeError, ValueError, ImportError, OSError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()


def legend_layout(items: list[tuple[str, tuple[int, int, int]]], width: int) -> list[LegendEntry]:
    """Where each (label, colour) goes in a strip ``width`` px wide: left to right, a new row when one is full."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = legend_font()
    entries, left, row = [], 4, 0
    for label, colour in items:
        size = SWATCH + 4 + int(draw.textlength(label, font=font)) + GAP
        if left > 4 and left + size > width:
            left, row = 4, row + 1
        entries.append(LegendEntry(label, colour, left, row))
        left += size
    return entries


def with_legend(image: np.ndarray, entries: list[LegendEntry], captions: list[str]) -> np.ndarray:
    """``image`` under a legend strip: the entries' swatches and names, then one row per caption. The strip's
    height is even (H.264 needs even frame sizes)."""
    from PIL import Image, ImageDraw

    entry_rows = entries[-1].row + 1 if entries else 0
    rows = entry_rows + len(captions)
    strip_height = rows * LEGEND_ROW + (rows * LEGEND_ROW) % 2
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + strip_height), LEGEND_BACKGROUND)
    canvas.paste(Image.fromarray(image), (0, strip_height))
    draw = ImageDraw.Draw(canvas)
    font = legend_font()
    for entry in entries:
        top = entry.row * LEGEND_ROW + (LEGEND_ROW - SWATCH) // 2
        draw.rectangle((entry.left, top, entry.left + SWATCH - 1, top + SWATCH - 1), fill=entry.colour)
        draw.text((entry.left + SWATCH + 4, entry.row * LEGEND_ROW + 3), entry.label, fill=TEXT, font=font)
    for number, caption in enumerate(captions, start=entry_rows):
        draw.text((4, number * LEGEND_ROW + 3), caption, fill=TEXT, font=font)
    return np.asarray(canvas)
