"""VOT toolkit sequence folders (vot-toolkit 0.7.4): ``<seq>/sequence`` (``channels.color=color/%08d.jpg``, ...),
``groundtruth.txt`` or ``groundtruth_<object>.txt`` (one region per frame: ``x,y,w,h``, a polygon, or an ``m...``
RLE mask) and, for multistart experiments, ``anchor.value`` (one number per frame, non-zero = anchor).

Inspected enough that the toolkit will not stop halfway through a run: frames present, ground truth present, and
every anchor frame annotated. No image is decoded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..annotations import read_text
from ..sequence import AnnotationError
from .names import check_sequence_name


@dataclass
class VotSequence:
    name: str
    path: Path
    masks: bool  # ground truth holds masks
    objects: int
    anchors: list[int] = field(default_factory=list)  # 1-based frame numbers marked in anchor.value
    unannotated_anchors: list[str] = field(default_factory=list)  # "frame N (file: 'line')" where no target is drawn


def _is_sequence(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "sequence").is_file() or (folder / "groundtruth.txt").is_file()
                                or any(folder.glob("groundtruth_*.txt")))


def _annotated(line: str) -> bool:
    """Whether a ground-truth line draws a region with area (the toolkit's "0" and 0,0,0,0 draw none)."""
    line = line.strip()
    try:
        if line.startswith("m"):  # offset x, offset y, width, height, then runs of 0s and 1s (0s first)
            return any(int(v) for v in line[1:].split(",")[5::2] if v)
        values = [float(v) for v in line.split(",")]
    except ValueError:
        return False
    if len(values) == 4:
        return values[2] > 0 and values[3] > 0
    xs, ys = values[0::2], values[1::2]
    return len(values) >= 6 and max(xs) > min(xs) and max(ys) > min(ys)


def inspect_sequence(folder: Path) -> VotSequence:
    """Check one VOT sequence folder; errors name the file."""
    folder = folder.resolve()
    pattern = "%08d.jpg"  # the toolkit's legacy layout: frames next to groundtruth.txt
    if (folder / "sequence").is_file():
        for line in read_text(folder / "sequence", kind="VOT sequence").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "channels.color":
                pattern = value.strip()
    first = folder / (pattern % 1 if "%" in pattern else pattern)
    if not first.is_file():
        raise FileNotFoundError(f"sequence {folder}: first frame not found: {first}")
    truths = sorted(folder.glob("groundtruth_*.txt")) or [folder / "groundtruth.txt"]
    if not truths[0].is_file():
        raise FileNotFoundError(f"sequence {folder}: groundtruth.txt (or groundtruth_<object>.txt) not found")
    regions = {truth: read_text(truth, kind="VOT ground-truth").splitlines() for truth in truths}
    for truth, lines in regions.items():
        if not lines or not lines[0].strip():
            raise AnnotationError(f"sequence {folder}: {truth.name} is empty")
    info = VotSequence(name=folder.name, path=folder, masks=any(lines[0].startswith("m") for lines in regions.values()),
                       objects=len(truths))
    anchor_file = folder / "anchor.value"
    if anchor_file.is_file():
        for number, line in enumerate(read_text(anchor_file, kind="anchor").splitlines(), 1):
            try:
                if line.strip() and float(line) != 0:
                    info.anchors.append(number)
            except ValueError:
                raise AnnotationError(f"{anchor_file}, line {number}: not a number: {line!r}") from None
        for truth, lines in regions.items():
            lines = lines + [""] * (max(info.anchors, default=0) - len(lines))  # a missing line annotates nothing
            info.unannotated_anchors += [f"frame {n} ({truth.name}: {lines[n - 1].strip()!r})"
                                         for n in info.anchors if not _annotated(lines[n - 1])]
    return info


def find_sequences(source: Path) -> list[VotSequence]:
    """The sequences of a VOT-format folder: those of its list.txt, else every sequence sub-folder (or itself)."""
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"sequence folder not found: {source}")
    listing = source / "list.txt"
    if listing.is_file():
        folders = []
        for number, line in enumerate(read_text(listing, kind="sequence list").split("\n"), 1):
            name = line.strip(" \t")
            if name:
                folder = source / check_sequence_name(name, f"{listing}, line {number}")
                if not folder.is_dir():
                    raise FileNotFoundError(f"{listing}, line {number}: sequence folder not found: {folder}")
                folders.append(folder)
    elif _is_sequence(source):
        folders = [source]
    else:
        folders = sorted(f for f in source.iterdir() if _is_sequence(f))
    if not folders:
        raise FileNotFoundError(f"no VOT sequences in {source}: expected list.txt or folders holding a `sequence` "
                                "file or groundtruth.txt with color/00000001.jpg ... (docs/vot.md, 'Sequence format')")
    infos = [inspect_sequence(folder) for folder in folders]
    for info in infos:  # a folder's own name (a list's lines are checked above)
        check_sequence_name(info.name, info.path)
    names = [info.name for info in infos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AnnotationError(f"sequence names occur twice in {source}: {', '.join(duplicates)}")
    return infos
