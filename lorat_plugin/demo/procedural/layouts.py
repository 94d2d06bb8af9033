"""Rendered sequences in the GOT-10k and LaSOT folder layouts (docs/demo.md lists the files), written by the one
layout writer (``lorat_plugin.data.datasets.write``).

GOT-10k: ``OUT/<subset>/<name>/`` (train -> ``train``, test -> ``val``, the subset got10k's ``ExperimentGOT10k``
scores) with 0-based boxes and the absence, cover and cut_by_image labels. LaSOT: ``OUT/<class>/<class>-<k>/``
(class = the target's photograph) with 1-based boxes, full_occlusion.txt, out_of_view.txt and nlp.txt. Absent
targets are written as 0,0,0,0; boxes with 4 decimals.

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

LAYOUTS = ("got10k", "lasot")  # of the writer's layouts, the ones the generator fills
JPEG_QUALITY = 90
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
    if layout == "got10k":
        width, height = plan.size
        meta = {
            "url": "procedural (lorat-plugin)", "begin": "0", "end": str(len(frames)), "anno_fps": "10Hz",
            "object_class": plan.target.photo, "motion_class": "procedural", "major_class": "procedural",
            "root_class": "procedural", "motion_adverb": plan.attributes["challenges"],
            "resolution": f"({width}, {height})", "generator": "lorat-plugin procedural benchmark",
            "split": plan.split, "seed": str(plan.seed), "index": str(plan.index), **plan.attributes,
        }
        attributes = {"cover": [f.cover for f in frames], "cut_by_image": [f.cut_by_image for f in frames],
                      "meta_info": meta}
    else:
        challenges = plan.attributes["challenges"].replace(",", ", ").replace("_", " ")
        attributes = {
            "full_occlusion": [f.full_occlusion for f in frames], "out_of_view": [f.out_of_view for f in frames],
            "nlp": (f"a {plan.target.shape} patch cut from the {plan.target.photo} photograph moving over the "
                    f"{plan.background} photograph ({challenges})"),
        }
    return write.SequenceData(plan.name, [f.image for f in frames], boxes, present, attributes)


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
