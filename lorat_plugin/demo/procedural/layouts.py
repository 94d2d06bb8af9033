"""Writing rendered sequences in the GOT-10k and LaSOT folder layouts (docs/demo.md lists the files).

GOT-10k: ``OUT/<subset>/<name>/`` (train -> ``train``, test -> ``val``, the subset got10k's ``ExperimentGOT10k``
scores) with 0-based boxes and the absence, cover and cut_by_image labels. LaSOT: ``OUT/<class>/<class>-<k>/``
(class = the target's photograph) with 1-based boxes, full_occlusion.txt, out_of_view.txt and nlp.txt. Absent
targets are written as 0,0,0,0.

A sequence is rendered into a hidden ``.<name>.<pid>.partial`` folder and renamed into place, so an interrupted run
leaves only whole sequences; the next run removes the partial folders of processes that no longer run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from ...files import atomic_write_text
from .plan import ScenePlan
from .render import RenderedFrame, render_sequence

LAYOUTS = ("got10k", "lasot")
GOT10K_SUBSETS = {"train": "train", "test": "val"}
LASOT_LISTS = {"train": "training_set.txt", "test": "testing_set.txt"}
JPEG_QUALITY = 90


def sequence_folder(root: Path, layout: str, plan: ScenePlan) -> Path:
    if layout == "got10k":
        return root / GOT10K_SUBSETS[plan.split] / plan.name
    return root / plan.name.rsplit("-", 1)[0] / plan.name


def _box_lines(frames: list[RenderedFrame], one_based: bool) -> str:
    shift = 1.0 if one_based else 0.0
    lines = ["0,0,0,0" if f.box is None else
             f"{f.box[0] + shift:.4f},{f.box[1] + shift:.4f},{f.box[2]:.4f},{f.box[3]:.4f}" for f in frames]
    return "\n".join(lines) + "\n"


def _got10k_labels(plan: ScenePlan, frames: list[RenderedFrame]) -> dict[str, str]:
    width, height = plan.size
    meta = {
        "url": "procedural (lorat-plugin)", "begin": "0", "end": str(len(frames)), "anno_fps": "10Hz",
        "object_class": plan.target.photo, "motion_class": "procedural", "major_class": "procedural",
        "root_class": "procedural", "motion_adverb": plan.attributes["challenges"],
        "resolution": f"({width}, {height})", "generator": "lorat-plugin procedural benchmark", "split": plan.split,
        "seed": str(plan.seed), "index": str(plan.index), **plan.attributes,
    }
    return {
        "groundtruth.txt": _box_lines(frames, one_based=False),
        "absence.label": "".join(f"{int(not f.present)}\n" for f in frames),
        "cover.label": "".join(f"{f.cover}\n" for f in frames),
        "cut_by_image.label": "".join(f"{int(f.cut_by_image)}\n" for f in frames),
        "meta_info.ini": "[METAINFO]\n" + "".join(f"{k}: {v}\n" for k, v in meta.items()),
    }


def _lasot_labels(plan: ScenePlan, frames: list[RenderedFrame]) -> dict[str, str]:
    challenges = plan.attributes["challenges"].replace(",", ", ").replace("_", " ")
    sentence = (f"a {plan.target.shape} patch cut from the {plan.target.photo} photograph moving over the "
                f"{plan.background} photograph ({challenges})")
    return {
        "groundtruth.txt": _box_lines(frames, one_based=True),
        "full_occlusion.txt": ",".join(str(int(f.full_occlusion)) for f in frames) + "\n",
        "out_of_view.txt": ",".join(str(int(f.out_of_view)) for f in frames) + "\n",
        "nlp.txt": sentence + "\n",
    }


def write_sequence(root: Path, layout: str, plan: ScenePlan) -> Path:
    """Render one sequence and move it into place; an existing (hence complete) folder is left as it is."""
    from PIL import Image

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    final = sequence_folder(root, layout, plan)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.partial"):  # left by a killed run (its process is gone)
        if not _process_alive(stale.name[len(final.name) + 2:-len(".partial")]):
            shutil.rmtree(stale, ignore_errors=True)
    partial = final.parent / f".{final.name}.{os.getpid()}.partial"
    try:
        image_dir = partial / "img" if layout == "lasot" else partial
        image_dir.mkdir(parents=True)
        frames: list[RenderedFrame] = []
        for number, frame in enumerate(render_sequence(plan), start=1):
            Image.fromarray(frame.image).save(image_dir / f"{number:08d}.jpg", quality=JPEG_QUALITY)
            frames.append(frame)
        labels = _got10k_labels(plan, frames) if layout == "got10k" else _lasot_labels(plan, frames)
        for file_name, text in labels.items():
            atomic_write_text(partial / file_name, text)
        os.replace(partial, final)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return final


def _process_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        pass
    return True


def list_file(root: Path, layout: str, split: str) -> Path:
    if layout == "got10k":
        return root / GOT10K_SUBSETS[split] / "list.txt"
    return root / LASOT_LISTS[split]


def groundtruth_digest(folders: list[Path]) -> str:
    """SHA-256 over every sequence's annotation files, in order: identifies a benchmark independently of how the
    JPEG encoder of the machine compressed its frames."""
    digest = hashlib.sha256()
    for folder in folders:
        for file_name in sorted(p.name for p in folder.iterdir() if p.suffix in (".txt", ".label", ".ini")):
            digest.update(f"{folder.name}/{file_name}\n".encode())
            digest.update((folder / file_name).read_bytes())
    return digest.hexdigest()


__all__ = ["LAYOUTS", "GOT10K_SUBSETS", "LASOT_LISTS", "write_sequence", "sequence_folder", "list_file",
           "groundtruth_digest"]
