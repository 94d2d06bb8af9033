"""Small sequences in the VOT toolkit's layout, generated for the VOT tests (no dataset is downloaded)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from lorat_plugin.data.datasets import write


def object_boxes(length: int, start: tuple[float, float], step: tuple[float, float],
                 size: tuple[int, int]) -> np.ndarray:
    """Integer x, y, w, h boxes of an object moving ``step`` px per frame."""
    t = np.arange(length)[:, None]
    xy = np.round(np.asarray(start) + t * np.asarray(step))
    return np.concatenate((xy, np.broadcast_to(np.asarray(size, dtype=np.float64), (length, 2))), axis=1)


def write_sequence(root: Path, name: str, objects: list[np.ndarray], *, size: tuple[int, int] = (128, 96),
                   anchors: list[int] | None = None, masks: bool = False, seed: int = 0) -> Path:
    """One sequence through the VOT layout writer: ``sequence`` file, color/%08d.jpg, groundtruth.txt, anchor.value
    (1 = forward anchor on those 0-based frames) when ``anchors`` is given. Each object is drawn as a solid coloured
    rectangle on a fixed noise background. Several objects (groundtruth_<i>.txt) and ``masks`` (mask ground truth,
    VOT RLE) are beyond the box layout: their files replace groundtruth.txt afterwards."""
    from vot.region import Mask, Rectangle
    from vot.region.io import write_trajectory

    width, height = size
    length = len(objects[0])
    rng = np.random.default_rng(seed)
    background = (rng.random((height // 8 + 1, width // 8 + 1, 3)) * 120 + 40).astype(np.uint8)
    background = np.kron(background, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    colours = [(230, 40, 40), (40, 230, 40), (40, 40, 230)]
    frames = []
    for index in range(length):
        frame = background.copy()
        for box, colour in zip((o[index] for o in objects), colours):
            x, y, w, h = box.astype(int)
            frame[max(y, 0):y + h, max(x, 0):x + w] = colour
        frames.append(frame)
    attributes = {} if anchors is None else {"anchors": anchors}
    folder = write.write_sequence(root, "vot", write.SequenceData(name, frames, objects[0], attributes=attributes),
                                  jpeg_quality=95)
    if len(objects) == 1 and not masks:
        return folder
    (folder / "groundtruth.txt").unlink()
    for number, boxes in enumerate(objects, 1):
        if masks:
            regions = []
            for x, y, w, h in boxes.astype(int):
                mask = np.zeros((height, width), dtype=np.uint8)
                mask[y:y + h, x:x + w] = 1
                regions.append(Mask(mask))
        else:
            regions = [Rectangle(*map(float, box)) for box in boxes]
        file = "groundtruth.txt" if len(objects) == 1 else f"groundtruth_{number}.txt"
        write_trajectory(str(folder / file), regions)
    return folder


def write_dataset(root: Path, specs: dict[str, dict]) -> Path:
    """Several sequences and list.txt; ``specs`` maps name -> keyword arguments of :func:`write_sequence`."""
    root.mkdir(parents=True, exist_ok=True)
    for name, spec in specs.items():
        write_sequence(root, name, **spec)
    write.write_listing(root, "vot", list(specs))
    return root
