"""Write frames and boxes in a benchmark's on-disk layout (the inverse of the readers), so that small generated
benchmarks read as the real ones do. Boxes are given 0-based ``x, y, w, h`` and converted to each layout's
convention (LaSOT and OTB files are 1-based).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..annotations import format_table
from ..sequence import to_rgb


@dataclass
class SequenceData:
    """One sequence to write: ``images`` H x W x 3 uint8 arrays (or PIL images), ``boxes`` N x 4 0-based xywh."""

    name: str
    images: Seq
    boxes: np.ndarray
    visible: np.ndarray | None = None
    attributes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if self.visible is None:
            self.visible = np.all(self.boxes[:, 2:] > 0, axis=1)
        self.visible = np.asarray(self.visible, dtype=bool)
        if not len(self.images) == len(self.boxes) == len(self.visible):
            raise ValueError(f"{self.name}: {len(self.images)} images, {len(self.boxes)} boxes, "
                             f"{len(self.visible)} visibility flags")


def write_dataset(root: str | Path, dataset: str, sequences: Iterable[SequenceData], *,
                  split: str | None = None) -> Path:
    """Write ``sequences`` under ``root`` in the layout of ``dataset`` (a key of ``DATASETS``); returns ``root``.

    ``split``: GOT-10k ``train``/``val``/``test`` (default ``val``), TrackingNet ``TEST`` (default) or ``TRAIN_<k>``,
    LaSOT ``test``/``train`` (adds the name to ``testing_set.txt``/``training_set.txt``). Test splits keep only
    the first box, as the real ones do.
    """
    root = Path(root)
    writer = {"got10k": _got10k, "lasot": _lasot, "lasot_ext": _lasot, "trackingnet": _trackingnet, "otb": _otb,
              "uav123": _uav123, "nfs": _nfs, "tnl2k": _tnl2k}.get(dataset)
    if writer is None:
        raise ValueError(f"no layout writer for dataset {dataset!r}")
    names = []
    for sequence in sequences:
        writer(root, sequence, split)
        names.append(sequence.name)
    if dataset == "got10k":
        _append_lines(root / (split or "val") / "list.txt", names)
    if dataset == "lasot" and split in ("train", "test"):
        _append_lines(root / ("testing_set.txt" if split == "test" else "training_set.txt"), names)
    return root


def _append_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text().split() if path.is_file() else []
    path.write_text("".join(f"{line}\n" for line in existing + [n for n in lines if n not in existing]))


def _write_frames(folder: Path, images: Seq, pattern: str, start: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(to_rgb(image)).save(folder / (pattern % (i + start)), quality=92)


def _got10k(root: Path, s: SequenceData, split: str | None) -> None:
    split = split or "val"
    folder = root / split / s.name
    _write_frames(folder, s.images, "%08d.jpg", 1)
    boxes = s.boxes[:1] if split == "test" else s.boxes
    (folder / "groundtruth.txt").write_text(format_table(boxes))
    if split == "test":
        return
    cover = s.attributes.get("cover", np.where(s.visible, 8, 0))
    labels = {"absence": (~s.visible).astype(int), "cover": np.asarray(cover, dtype=int),
              "cut_by_image": np.zeros(len(s.boxes), dtype=int)}
    for label, values in labels.items():
        (folder / f"{label}.label").write_text("".join(f"{int(v)}\n" for v in values))
    height, width = np.asarray(s.images[0]).shape[:2]
    meta = {"object_class": s.attributes.get("class", "object"), "motion_class": "moving",
            "major_class": "object", "root_class": "object", "motion_adverb": "slowly",
            "anno_fps": "10Hz", "resolution": f"({width}, {height})"}
    (folder / "meta_info.ini").write_text("[METAINFO]\n" + "".join(f"{k}: {v}\n" for k, v in meta.items()))


def _lasot(root: Path, s: SequenceData, split: str | None) -> None:
    if "-" not in s.name:
        raise ValueError(f"LaSOT sequence names are <class>-<k>, got {s.name!r}")
    folder = root / s.name.rsplit("-", 1)[0] / s.name
    _write_frames(folder / "img", s.images, "%08d.jpg", 1)
    (folder / "groundtruth.txt").write_text(format_table(s.boxes + [1.0, 1.0, 0.0, 0.0]))
    for flag, default in (("full_occlusion", ~s.visible), ("out_of_view", np.zeros(len(s.boxes), dtype=bool))):
        (folder / f"{flag}.txt").write_text(",".join(str(int(v)) for v in s.attributes.get(flag, default)) + "\n")
    (folder / "nlp.txt").write_text(s.attributes.get("nlp", f"the {s.name.rsplit('-', 1)[0]} being tracked") + "\n")
    if "challenges" in s.attributes:
        from .lasot import ATTRIBUTE_NAMES

        flags = [int(bool(s.attributes["challenges"].get(short, False))) for short in ATTRIBUTE_NAMES]
        (root / "att").mkdir(parents=True, exist_ok=True)
        (root / "att" / f"{s.name}.txt").write_text(",".join(map(str, flags)) + "\n")


def _trackingnet(root: Path, s: SequenceData, split: str | None) -> None:
    chunk = (split or "TEST").upper()
    _write_frames(root / chunk / "frames" / s.name, s.images, "%d.jpg", 0)
    boxes = s.boxes[:1] if chunk == "TEST" else s.boxes
    (root / chunk / "anno").mkdir(parents=True, exist_ok=True)
    (root / chunk / "anno" / f"{s.name}.txt").write_text(format_table(boxes))


def _otb(root: Path, s: SequenceData, split: str | None) -> None:
    _write_frames(root / s.name / "img", s.images, "%04d.jpg", 1)
    (root / s.name / "groundtruth_rect.txt").write_text(format_table(s.boxes + [1.0, 1.0, 0.0, 0.0]))


def _uav123(root: Path, s: SequenceData, split: str | None) -> None:
    version = (split or "UAV123").upper()
    _write_frames(root / "data_seq" / "UAV123" / s.name, s.images, "%06d.jpg", 1)
    boxes = np.where(s.visible[:, None], s.boxes, np.nan)
    (root / "anno" / version).mkdir(parents=True, exist_ok=True)
    (root / "anno" / version / f"{s.name}.txt").write_text(format_table(boxes))


def _nfs(root: Path, s: SequenceData, split: str | None) -> None:
    fps = int(split or 30)
    folder = root / s.name / str(fps)
    _write_frames(folder / s.name, s.images, "%05d.jpg", 1)
    lines = [f"1 {x:.10g} {y:.10g} {x + w:.10g} {y + h:.10g} {i} {int(not visible)} 0 0 \"object\"\n"
             for i, ((x, y, w, h), visible) in enumerate(zip(s.boxes, s.visible), start=1)]
    (folder / f"{s.name}.txt").write_text("".join(lines))


def _tnl2k(root: Path, s: SequenceData, split: str | None) -> None:
    _write_frames(root / s.name / "imgs", s.images, "%05d.jpg", 1)
    (root / s.name / "groundtruth.txt").write_text(format_table(np.where(s.visible[:, None], s.boxes, 0.0)))
    (root / s.name / "language.txt").write_text(s.attributes.get("language", "the object") + "\n")
