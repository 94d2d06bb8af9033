"""Rendered sequences in the GOT-10k, LaSOT and VOT folder layouts (docs/demo.md lists the files), written by the one
layout writer (``lorat_plugin.data.datasets.write``).

GOT-10k: ``OUT/<subset>/<name>/`` (train -> ``train``, test -> ``val``, the subset got10k's ``ExperimentGOT10k``
scores) with 0-based boxes and the absence, cover and cut_by_image labels. LaSOT: ``OUT/<class>/<class>-<k>/``
(class = the target's photograph) with 1-based boxes, full_occlusion.txt, out_of_view.txt, nlp.txt and the same
meta_info.ini as GOT-10k's (its ``challenges`` line lists the sequence's challenges in both layouts). VOT:
``OUT/<name>/`` with the toolkit's ``sequence`` file, ``color/``, 0-based boxes, per-frame tags and ``anchor.value``
(see :data:`ANCHOR_SPACING`), plus ``OUT/list.txt``. Absent targets are written as 0,0,0,0; boxes with 4 decimals.

The writer writes a sequence into a hidden ``.<name>.<pid>.partial`` folder and renames it into place, so an
interrupted run leaves only whole sequences; the next run removes the partial folders of processes that no longer
run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ...data.datasets import write
from ...data.datasets.procedural import GOT10K_SUBSETS
from .plan import ScenePlan
from .render import RenderedFrame, render_sequence

LAYOUTS = ("got10k", "lasot", "vot")  # of the writer's layouts, the ones the generator fills
JPEG_QUALITY = 90
# VOT multistart experiments restart the tracker from every anchor; the VOT short-term datasets place them roughly
# every 50 frames, so the generated ones do too (on frames where the target is present).
ANCHOR_SPACING = 50
# The VOT toolkit's frame tags that a procedural challenge sets on every frame of its sequence (the occlusion tag is
# drawn per frame from the target's visible fraction).
VOT_SEQUENCE_TAGS = {"camera_motion": "camera_motion", "illumination": "illum_change", "scale_change": "size_change",
                     "aspect_change": "size_change", "fast_motion": "motion_change"}
BOX_FORMAT = "%.4f"  # the shipped benchmark's ground truth (its SHA-256 is recorded in assets/demo_benchmark.json)


def layout_split(layout: str, split: str) -> str:
    """The split as the layout names it (the readers' ``split`` argument): GOT-10k writes the test split as val."""
    return GOT10K_SUBSETS[split] if layout == "got10k" else split


def sequence_folder(root: Path, layout: str, plan: ScenePlan) -> Path:
    return write.sequence_folder(root, layout, plan.name, layout_split(layout, plan.split))


def list_file(root: Path, layout: str, split: str) -> Path:
    return write.listing_path(root, layout, layout_split(layout, split))


def sequence_data(plan: ScenePlan, frames: list[RenderedFrame], layout: str) -> write.SequenceData:
    """A rendered sequence as the writer takes it: an absent target is a row of zeros."""
    boxes = np.array([f.box if f.present else np.zeros(4) for f in frames], dtype=np.float64)
    present = np.array([f.present for f in frames])
    width, height = plan.size
    meta = {
        "url": "procedural (lorat-plugin)", "begin": "0", "end": str(len(frames)), "anno_fps": "10Hz",
        "object_class": plan.target.photo, "motion_class": "procedural", "major_class": "procedural",
        "root_class": "procedural", "motion_adverb": plan.attributes["challenges"],
        "resolution": f"({width}, {height})", "generator": "lorat-plugin procedural benchmark",
        "split": plan.split, "seed": str(plan.seed), "index": str(plan.index), **plan.attributes,
    }
    if layout == "got10k":
        attributes = {"cover": [f.cover for f in frames], "cut_by_image": [f.cut_by_image for f in frames],
                      "meta_info": meta}
    elif layout == "vot":
        attributes = {"tags": vot_tags(plan, frames), "anchors": vot_anchors(present)}
    else:
        challenges = plan.attributes["challenges"].replace(",", ", ").replace("_", " ")
        attributes = {
            "full_occlusion": [f.full_occlusion for f in frames], "out_of_view": [f.out_of_view for f in frames],
            "nlp": (f"a {plan.target.shape} patch cut from the {plan.target.photo} photograph moving over the "
                    f"{plan.background} photograph ({challenges})"),
            "meta_info": meta,
        }
    return write.SequenceData(plan.name, [f.image for f in frames], boxes, present, attributes)


def vot_tags(plan: ScenePlan, frames: list[RenderedFrame]) -> dict[str, list[bool]]:
    """Per-frame VOT tags: occlusion where the target is partly or fully hidden (or absent), and the tags of the
    sequence's challenges on every frame."""
    tags = {"occlusion": [f.cover < 8 for f in frames]}
    for challenge in plan.challenges:
        if challenge in VOT_SEQUENCE_TAGS:
            tags[VOT_SEQUENCE_TAGS[challenge]] = [True] * len(frames)
    return tags


def vot_anchors(present: np.ndarray) -> list[int]:
    """0-based anchor frames: the first frame, then the first frame with the target present at or after every
    :data:`ANCHOR_SPACING` frames (the toolkit initialises the tracker on an anchor's ground truth)."""
    anchors = [0]
    for start in range(ANCHOR_SPACING, len(present), ANCHOR_SPACING):
        later = np.flatnonzero(present[start:])
        if len(later) and start + later[0] not in anchors:
            anchors.append(int(start + later[0]))
    return anchors


def write_sequence(root: Path, layout: str, plan: ScenePlan) -> Path:
    """Render one sequence and write it through the layout writer (whole or not at all); an existing (hence
    complete) folder is left as it is."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    final = sequence_folder(root, layout, plan)
    if final.is_dir():
        return final
    frames = list(render_sequence(plan))
    return write.write_sequence(root, layout, sequence_data(plan, frames, layout),
                                split=layout_split(layout, plan.split), box_format=BOX_FORMAT,
                                jpeg_quality=JPEG_QUALITY)


def groundtruth_digest(folders: list[Path]) -> str:
    """SHA-256 over every sequence's annotation files, in order: identifies a benchmark independently of how the
    JPEG encoder of the machine compressed its frames."""
    digest = hashlib.sha256()
    for folder in folders:
        for file_name in sorted(p.name for p in folder.iterdir() if p.suffix in (".txt", ".label", ".ini")):
            digest.update(f"{folder.name}/{file_name}\n".encode())
            digest.update((folder / file_name).read_bytes())
    return digest.hexdigest()


__all__ = ["LAYOUTS", "GOT10K_SUBSETS", "write_sequence", "sequence_folder", "list_file", "groundtruth_digest",
           "layout_split"]
