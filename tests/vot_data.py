"""Small sequences in the VOT toolkit's layout, generated for the VOT tests (no dataset is downloaded)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def object_boxes(length: int, start: tuple[float, float], step: tuple[float, float],
                 size: tuple[int, int]) -> np.ndarray:
    """Integer x, y, w, h boxes of an object moving ``step`` px per frame."""
    t = np.arange(length)[:, None]
    xy = np.round(np.asarray(start) + t * np.asarray(step))
    return np.concatenate((xy, np.broadcast_to(np.asarray(size, dtype=np.float64), (length, 2))), axis=1)


def write_sequence(root: Path, name: str, objects: list[np.ndarray], *, size: tuple[int, int] = (128, 96),
                   anchors: list[int] | None = None, masks: bool = False, seed: int = 0) -> Path:
    """One sequence: ``sequence`` file, color/%08d.jpg, groundtruth.txt (or groundtruth_<i>.txt for several
    objects), anchor.value (1 = forward anchor on those frames) when ``anchors`` is given. Each object is drawn
    as a solid coloured rectangle on a fixed noise background; ``masks`` writes mask ground truth (VOT RLE)."""
    from vot.region import Mask, Rectangle
    from vot.region.io import write_trajectory

    folder = root / name
    (folder / "color").mkdir(parents=True)
    width, height = size
    length = len(objects[0])
    rng = np.random.default_rng(seed)
    background = (rng.random((height // 8 + 1, width // 8 + 1, 3)) * 120 + 40).astype(np.uint8)
    background = np.kron(background, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    colours = [(230, 40, 40), (40, 230, 40), (40, 40, 230)]
    for index in range(length):
        frame = background.copy()
        for box, colour in zip((o[index] for o in objects), colours):
            x, y, w, h = box.astype(int)
            frame[max(y, 0):y + h, max(x, 0):x + w] = colour
        Image.fromarray(frame).save(folder / "color" / f"{index + 1:08d}.jpg", quality=95)
    (folder / "sequence").write_text(f"channels.color=color/%08d.jpg\nfps=30\nformat=default\nname={name}\n"
                                     f"width={width}\nheight={height}\nlength={length}\n")
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
    if anchors is not None:
        values = np.zeros(length)
        values[anchors] = 1
        (folder / "anchor.value").write_text("".join(f"{v:g}\n" for v in values))
    return folder


def write_dataset(root: Path, specs: dict[str, dict]) -> Path:
    """Several sequences and list.txt; ``specs`` maps name -> keyword arguments of :func:`write_sequence`."""
    root.mkdir(parents=True, exist_ok=True)
    for name, spec in specs.items():
        write_sequence(root, name, **spec)
    (root / "list.txt").write_text("".join(f"{name}\n" for name in specs))
    return root
