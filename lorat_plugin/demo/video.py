"""One sequence of the demo benchmark rendered with the ground truth and every tracker's box."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..data.sequence import Sequence, read_image

# Box colours in the rendered video: ground truth white, LoRAT green, then the baselines.
COLORS = {"GT": (255, 255, 255), "LoRAT": (40, 220, 40), "CSRT": (255, 150, 0), "KCF": (60, 140, 255),
          "StaticBox": (200, 60, 200)}


def render_sequence_video(sequences: list[Sequence], results: list, name: str, folder: Path,
                          scale: int = 2, fps: float = 10.0) -> Path:
    """One sequence with the ground truth and every tracker's box drawn: MP4 when PyAV is installed, else GIF."""
    from PIL import Image

    from ..data.video import draw_boxes, write_video

    by_name = {s.name: s for s in sequences}
    if name not in by_name:
        raise ValueError(f"no sequence {name!r} in the demo benchmark; choose one of {', '.join(by_name)}")
    sequence = by_name[name]
    suffix = ".mp4" if importlib.util.find_spec("av") else ".gif"  # PyAV writes mp4; imageio falls back to GIF

    def frames():
        for index, path in enumerate(sequence.frames):
            image = read_image(path)
            height, width = image.shape[:2]
            image = np.asarray(Image.fromarray(image).resize((width * scale, height * scale), Image.BILINEAR))
            shown = int(sequence.visible[index])  # the ground truth, drawn unless the target is absent
            boxes, colors, labels = [sequence.boxes[index] * scale] * shown, [COLORS["GT"]] * shown, [None] * shown
            for result in results:
                boxes.append(np.asarray(result.runs[name][0][index]) * scale)
                colors.append(COLORS.get(result.name, COLORS["LoRAT"] if "LoRAT" in result.name else (255, 255, 0)))
                labels.append(result.name if index == 0 else None)
            yield _caption(draw_boxes(image, boxes, colors, labels, thickness=2),
                           f"{name}  frame {index + 1}/{len(sequence)}  white: ground truth")

    return write_video(folder / f"{name}{suffix}", frames(), fps=fps)


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, 14), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(canvas)
