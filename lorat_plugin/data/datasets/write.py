"""Write frames and boxes in a benchmark's on-disk layout (the inverse of the readers), so that generated benchmarks
read as the real ones do. The one writer: tests, ``lorat make-benchmark`` (the procedural benchmark) and any new
layout go through :func:`write_sequence`.

Boxes are given 0-based ``x, y, w, h`` and converted to each layout's convention (LaSOT and OTB files are 1-based);
a row of zeros means "no target" and is written ``0,0,0,0`` in every layout. Numbers are written with
``box_format`` (``%.10g``: the values as given; the procedural benchmark's ``%.4f``).

A new layout is one function returning the text files of a sequence, registered with :func:`layout` together with
where the sequence's folder is, how its frames are named and which file lists the sequences.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...files import atomic_write_text
from ..sequence import to_rgb
from .lasot import ATTRIBUTE_NAMES, SPLIT_LISTS


@dataclass
class SequenceData:
    """One sequence to write: ``images`` H x W x 3 uint8 arrays (or PIL images), ``boxes`` N x 4 0-based xywh.

    ``attributes`` a layout may use: GOT-10k ``cover``, ``cut_by_image`` (per frame), ``class``, ``meta_info`` (the
    whole ``meta_info.ini``, in order); LaSOT ``full_occlusion``, ``out_of_view`` (per frame), ``nlp``,
    ``challenges`` (short name -> bool), ``meta_info`` (written as GOT-10k's); TNL2K ``language``; VOT ``tags``
    (tag -> per-frame flags), ``anchors`` (0-based anchor frames), ``fps``."""

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


# (sequence, split, box format) -> text files, paths relative to the benchmark root
FilesFunction = Callable[[SequenceData, "str | None", str], "dict[str, str]"]


@dataclass(frozen=True)
class Layout:
    name: str
    folder: Callable[[str, "str | None"], str]  # (sequence name, split) -> the sequence's folder under the root
    frames: str  # frame file names inside that folder: "img/%08d.jpg"; "{name}" stands for the sequence's name
    first_frame: int                            # the number of the first frame in ``frames``
    files: FilesFunction
    listing: Callable[["str | None"], "str | None"]  # split -> the file listing the sequence names, or None


LAYOUTS: dict[str, Layout] = {}


def layout(name: str, *, folder: Callable[[str, str | None], str], frames: str, first_frame: int = 1,
           listing: Callable[[str | None], str | None] = lambda split: None
           ) -> Callable[[FilesFunction], FilesFunction]:
    """Register ``files`` as the text files of layout ``name`` (a decorator)."""
    def register(files: FilesFunction) -> FilesFunction:
        LAYOUTS[name] = Layout(name, folder, frames, first_frame, files, listing)
        return files

    return register


def find_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"no layout writer for dataset {name!r} (known: {', '.join(LAYOUTS)})")
    return LAYOUTS[name]


def sequence_folder(root: str | Path, layout_name: str, name: str, split: str | None = None) -> Path:
    return Path(root) / find_layout(layout_name).folder(name, split)


def listing_path(root: str | Path, layout_name: str, split: str | None = None) -> Path | None:
    listing = find_layout(layout_name).listing(split)
    return None if listing is None else Path(root) / listing


def write_dataset(root: str | Path, dataset: str, sequences: Iterable[SequenceData], *, split: str | None = None,
                  box_format: str = "%.10g") -> Path:
    """Write ``sequences`` under ``root`` in the layout of ``dataset`` and add them to its list file; returns ``root``.

    ``split``: GOT-10k ``train``/``val``/``test`` (default ``val``), TrackingNet ``TEST`` (default) or ``TRAIN_<k>``,
    LaSOT ``test``/``train`` (adds the name to ``testing_set.txt``/``training_set.txt``). Test splits keep only
    the first box, as the real ones do.
    """
    root = Path(root)
    names = []
    for sequence in sequences:
        write_sequence(root, dataset, sequence, split=split, box_format=box_format)
        names.append(sequence.name)
    write_listing(root, dataset, names, split=split, append=True)
    return root


def write_sequence(root: str | Path, layout_name: str, sequence: SequenceData, *, split: str | None = None,
                   box_format: str = "%.10g", jpeg_quality: int = 92) -> Path:
    """Write one sequence; returns its folder. The folder is written whole under a hidden ``.<name>.<pid>.partial``
    name and then moved into place (replacing an earlier one), so an interrupted write leaves no half sequence; the
    partial folders of processes that no longer run are removed. Files outside the folder come after it."""
    from PIL import Image

    spec = find_layout(layout_name)
    root = Path(root)
    final = root / spec.folder(sequence.name, split)
    texts = spec.files(sequence, split, box_format)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(final)
    partial = final.parent / f".{final.name}.{os.getpid()}.partial"
    outside = {}
    try:
        for index, image in enumerate(sequence.images):
            path = partial / (spec.frames % (index + spec.first_frame)).format(name=sequence.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_rgb(image)).save(path, quality=jpeg_quality)
        partial.mkdir(parents=True, exist_ok=True)  # a sequence of no frames still has its folder
        for relative, text in texts.items():
            path = root / relative
            if final in path.parents:
                atomic_write_text(partial / path.relative_to(final), text)
            else:
                outside[path] = text
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    for path, text in outside.items():
        atomic_write_text(path, text)
    return final


def write_listing(root: str | Path, layout_name: str, names: list[str], *, split: str | None = None,
                  append: bool = False) -> Path | None:
    """The layout's list of sequence names (``list.txt``, ``testing_set.txt``): ``names``, after the names already
    listed when ``append``. None for a layout (or split) without a list."""
    path = listing_path(root, layout_name, split)
    if path is None:
        return None
    existing = path.read_text().split() if append and path.is_file() else []
    atomic_write_text(path, "".join(f"{name}\n" for name in existing + [n for n in names if n not in existing]))
    return path


def _remove_stale_partials(final: Path) -> None:
    """Partial folders of ``final`` left by killed runs (their process is gone); a live run's is kept."""
    prefix, suffix = f".{final.name}.", ".partial"
    for entry in os.scandir(final.parent):
        if entry.name.startswith(prefix) and entry.name.endswith(suffix) and entry.is_dir():
            if not _process_alive(entry.name[len(prefix):-len(suffix)]):
                shutil.rmtree(entry.path, ignore_errors=True)


def _process_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        pass
    return True


def box_lines(boxes: np.ndarray, box_format: str = "%.10g", *, one_based: bool = False,
              delimiter: str = ",") -> str:
    """Annotation rows: 0-based boxes in the file's convention (``one_based``: +1 on x and y), a row of zeros as
    ``0,0,0,0``."""
    shift = np.array([1.0, 1.0, 0.0, 0.0]) if one_based else np.zeros(4)
    lines = []
    for row in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        if not np.any(row):
            lines.append(delimiter.join("0" * 4))
        else:
            lines.append(delimiter.join(box_format % value for value in row + shift))
    return "".join(line + "\n" for line in lines)


def _flag_lines(values: Iterable, delimiter: str) -> str:
    """Per-frame integer labels: one per line (GOT-10k ``*.label``) or comma-separated on one line (LaSOT)."""
    if delimiter == "\n":
        return "".join(f"{int(v)}\n" for v in values)
    return delimiter.join(str(int(v)) for v in values) + "\n"


def _got10k_folder(name: str, split: str | None) -> str:
    return f"{split or 'val'}/{name}"


@layout("got10k", folder=_got10k_folder, frames="%08d.jpg", listing=lambda split: f"{split or 'val'}/list.txt")
def _got10k(s: SequenceData, split: str | None, box_format: str) -> dict[str, str]:
    folder = _got10k_folder(s.name, split)
    test = split == "test"
    files = {f"{folder}/groundtruth.txt": box_lines(s.boxes[:1] if test else s.boxes, box_format)}
    if test:
        return files
    n = len(s.boxes)
    labels = {"absence": ~s.visible, "cover": s.attributes.get("cover", np.where(s.visible, 8, 0)),
              "cut_by_image": s.attributes.get("cut_by_image", np.zeros(n, dtype=int))}
    for label, values in labels.items():
        files[f"{folder}/{label}.label"] = _flag_lines(values, "\n")
    meta = s.attributes.get("meta_info")
    if meta is None:
        height, width = np.asarray(s.images[0]).shape[:2]
        meta = {"object_class": s.attributes.get("class", "object"), "motion_class": "moving",
                "major_class": "object", "root_class": "object", "motion_adverb": "slowly",
                "anno_fps": "10Hz", "resolution": f"({width}, {height})"}
    files[f"{folder}/meta_info.ini"] = _meta_info_text(meta)
    return files


def _meta_info_text(meta: dict) -> str:
    return "[METAINFO]\n" + "".join(f"{key}: {value}\n" for key, value in meta.items())


def _lasot_folder(name: str, split: str | None) -> str:
    if "-" not in name:
        raise ValueError(f"LaSOT sequence names are <class>-<k>, got {name!r}")
    return f"{name.rsplit('-', 1)[0]}/{name}"


@layout("lasot", folder=_lasot_folder, frames="img/%08d.jpg", listing=lambda split: SPLIT_LISTS.get(split or ""))
def _lasot(s: SequenceData, split: str | None, box_format: str) -> dict[str, str]:
    folder = _lasot_folder(s.name, split)
    files = {f"{folder}/groundtruth.txt": box_lines(s.boxes, box_format, one_based=True)}
    for flag, default in (("full_occlusion", ~s.visible), ("out_of_view", np.zeros(len(s.boxes), dtype=bool))):
        files[f"{folder}/{flag}.txt"] = _flag_lines(s.attributes.get(flag, default), ",")
    files[f"{folder}/nlp.txt"] = s.attributes.get("nlp", f"the {s.name.rsplit('-', 1)[0]} being tracked") + "\n"
    if "challenges" in s.attributes:
        flags = [bool(s.attributes["challenges"].get(short, False)) for short in ATTRIBUTE_NAMES]
        files[f"att/{s.name}.txt"] = _flag_lines(flags, ",")
    if "meta_info" in s.attributes:  # not LaSOT's own: the procedural benchmark's description, as GOT-10k writes it
        files[f"{folder}/meta_info.ini"] = _meta_info_text(s.attributes["meta_info"])
    return files


LAYOUTS["lasot_ext"] = LAYOUTS["lasot"]


def _trackingnet_chunk(split: str | None) -> str:
    return (split or "TEST").upper()


@layout("trackingnet", folder=lambda name, split: f"{_trackingnet_chunk(split)}/frames/{name}", frames="%d.jpg",
        first_frame=0)
def _trackingnet(s: SequenceData, split: str | None, box_format: str) -> dict[str, str]:
    chunk = _trackingnet_chunk(split)
    boxes = s.boxes[:1] if chunk == "TEST" else s.boxes
    return {f"{chunk}/anno/{s.name}.txt": box_lines(boxes, box_format)}


@layout("otb", folder=lambda name, split: name, frames="img/%04d.jpg")
def _otb(s: SequenceData, split: str | None, box_format: str) -> dict[str, str]:
    return {f"{s.name}/groundtruth_rect.txt": box_lines(s.boxes, box_format, one_based=True)}


@layout("uav123", folder=lambda name, split: f"data_seq/UAV123/{name}", frames="%06d.jpg")
def _uav123(s: SequenceData, split: str | None, box_format: str) -> dict[str, str]:
    version = (split or "UAV123").upper()
    boxes = np.where(s.visible[:, None], s.boxes, np.nan)  # UAV123 marks an absent target with NaN
    return {f"anno/{version}/{s.name}.txt": box_lines(boxes, box_format)}


@layout("nfs", folder=lambda name, split: f"{name}/{int(split or 30)}", frames="{name}/%05d.jpg")
def _nfs(s: SequenceData, split: str | None, box_format: str) -> dict[str, str]:
    lines = []
    for number, ((x, y, w, h), visible) in enumerate(zip(s.boxes, s.visible), start=1):
        corners = " ".join(box_format % v for v in (x, y, x + w, y + h))
        lines.append(f"1 {corners} {number} {int(not visible)} 0 0 \"object\"\n")
    return {f"{s.name}/{int(split or 30)}/{s.name}.txt": "".join(lines)}


@layout("tnl2k", folder=lambda name, split: name, frames="imgs/%05d.jpg")
def _tnl2k(s: SequenceData, split: str | None, box_format: str) -> dict[str, str]:
    return {f"{s.name}/groundtruth.txt": box_lines(np.where(s.visible[:, None], s.boxes, 0.0), box_format),
            f"{s.name}/language.txt": s.attributes.get("language", "the object") + "\n"}


@layout("custom", folder=lambda name, split: name, frames="img/%08d.jpg")
def _custom(s: SequenceData, split: str | None, box_format: str) -> dict[str, str]:
    return {f"{s.name}/groundtruth.txt": box_lines(s.boxes, box_format)}


@layout("vot", folder=lambda name, split: name, frames="color/%08d.jpg", listing=lambda split: "list.txt")
def _vot(s: SequenceData, split: str | None, box_format: str) -> dict[str, str]:
    """The VOT toolkit's sequence folder (vot-toolkit 0.7.4, ``vot.dataset.common``): ``sequence`` (channels and
    size), ``groundtruth.txt`` (0-based ``x,y,w,h``), one ``<tag>.tag`` per frame tag (``tags``: name -> per-frame
    flags) and, when ``anchors`` (0-based frame numbers) is given, ``anchor.value`` (1 = forward anchor) for the
    multistart experiments."""
    height, width = np.asarray(s.images[0]).shape[:2] if len(s.images) else (0, 0)
    metadata = {"channels.color": "color/%08d.jpg", "fps": s.attributes.get("fps", 30), "format": "default",
                "name": s.name, "width": width, "height": height, "length": len(s.boxes)}
    files = {f"{s.name}/sequence": "".join(f"{key}={value}\n" for key, value in metadata.items()),
             f"{s.name}/groundtruth.txt": box_lines(np.where(s.visible[:, None], s.boxes, 0.0), box_format)}
    for tag, flags in s.attributes.get("tags", {}).items():
        files[f"{s.name}/{tag}.tag"] = _flag_lines(flags, "\n")
    if "anchors" in s.attributes:
        values = np.zeros(len(s.boxes), dtype=int)
        values[list(s.attributes["anchors"])] = 1
        files[f"{s.name}/anchor.value"] = _flag_lines(values, "\n")
    return files
