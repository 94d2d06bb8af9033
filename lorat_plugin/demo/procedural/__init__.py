"""A tracking benchmark generated from real photographs, with exact ground truth (see docs/demo.md): a target cut
from one photograph moves over another with the challenges of :data:`CHALLENGES`. Sequences are seeded and
reproducible; the train and test splits use disjoint photographs (:mod:`.photos`).

    make_benchmark("bench", split="test", sequences=16, frames=100, size=(320, 240), seed=0, layout="got10k")
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...data.datasets.write import write_listing
from ...files import atomic_write_text
from .layouts import LAYOUTS, groundtruth_digest, layout_split, list_file, sequence_folder, write_sequence
from .photos import PHOTOGRAPHS, SPLITS, load_photograph, photograph_split, split_photographs, texture_names
from .plan import CHALLENGES, ScenePlan, plan_sequence
from .render import MIN_VISIBLE, RenderedFrame, render_sequence

GENERATOR_VERSION = 1  # bump when the same seed would render different sequences
MANIFEST = "procedural.json"


@dataclass(frozen=True)
class Benchmark:
    """What :func:`make_benchmark` wrote: read it with ``load_dataset(layout, root, split=subset)``."""

    root: Path
    layout: str
    subset: str  # the split argument of the readers: "train"/"val" (got10k), "train"/"test" (lasot)
    names: tuple[str, ...]
    manifest: dict

    @property
    def folders(self) -> list[Path]:
        return [sequence_folder(self.root, self.layout, plan) for plan in self.plans()]

    def plans(self) -> list[ScenePlan]:
        m = self.manifest
        return plan_benchmark(split=m["split"], sequences=m["sequences"], frames=m["frames"], size=tuple(m["size"]),
                              seed=m["seed"], photographs=tuple(m["photographs"]), layout=self.layout)


def benchmark_photographs(split: str, photographs: tuple[str, ...] | None = None, textures: int = 0
                          ) -> tuple[str, ...]:
    """The photographs a benchmark draws from: ``photographs`` (default: all of the split's) plus the first
    ``textures`` synthetic textures (train split only). Checks that every name exists and belongs to the split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    if textures and split != "train":
        raise ValueError("synthetic textures are for the train split only: the test split is cut from real "
                         "photographs")
    photographs = (tuple(photographs) if photographs else split_photographs(split)) + texture_names(textures)
    unknown = [p for p in photographs if photograph_split(p) is None]
    if unknown:
        raise ValueError(f"unknown photographs {unknown}; known: {', '.join(PHOTOGRAPHS)} (and texture-NNN, train "
                         "split)")
    wrong = [p for p in photographs if photograph_split(p) != split]
    if wrong:
        raise ValueError(f"photographs {wrong} belong to the other split; the splits must stay disjoint")
    return tuple(dict.fromkeys(photographs))


def plan_benchmark(*, split: str, sequences: int, frames: int, size: tuple[int, int], seed: int,
                   photographs: tuple[str, ...] | None = None, layout: str = "got10k") -> list[ScenePlan]:
    photographs = benchmark_photographs(split, photographs)  # checks the split as well
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if sequences < 1:
        raise ValueError(f"sequences must be at least 1, got {sequences}")
    width, height = size
    if width < 64 or height < 64:
        raise ValueError(f"frames of {width}x{height} are too small: at least 64x64")
    plans = [plan_sequence(split=split, index=i, seed=seed, frames=frames, size=(width, height),
                           photographs=photographs, name="") for i in range(sequences)]
    counts: dict[str, int] = {}  # GOT-10k (and VOT) style Procedural_Test_000001; LaSOT style <target photograph>-<k>
    for i, plan in enumerate(plans):
        counts[plan.target.photo] = counts.get(plan.target.photo, 0) + 1
        plan.name = (f"Procedural_{split.capitalize()}_{i + 1:06d}" if layout != "lasot"
                     else f"{plan.target.photo}-{counts[plan.target.photo]}")
    return plans


def make_benchmark(output: str | Path, *, split: str = "test", sequences: int = 16, frames: int = 100,
                   size: tuple[int, int] = (320, 240), seed: int = 0, layout: str = "got10k",
                   photographs: tuple[str, ...] | None = None, textures: int = 0,
                   progress: Callable[[int, int, str], None] | None = None) -> Benchmark:
    """Generate (or complete) a benchmark under ``output``; sequences already there are kept, so an interrupted
    run resumes. Refuses to mix sequences generated with other parameters in one folder. ``textures`` adds that
    many synthetic textures to the train split's photographs (:func:`.photos.synthetic_texture`)."""
    root = Path(output).expanduser()
    photographs = benchmark_photographs(split, photographs, textures)
    plans = plan_benchmark(split=split, sequences=sequences, frames=frames, size=size, seed=seed,
                           photographs=photographs, layout=layout)
    manifest = {
        "generator": "lorat-plugin procedural benchmark", "version": GENERATOR_VERSION, "split": split,
        "layout": layout, "sequences": sequences, "frames": frames, "size": list(size), "seed": seed,
        "photographs": list(photographs),
    }
    listing = list_file(root, layout, split)
    manifest_path = listing.parent / (MANIFEST if layout == "got10k" else f"procedural-{split}.json")
    if manifest_path.is_file():
        existing = json.loads(manifest_path.read_text(encoding="utf-8"))
        differs = [f"{k}: {existing.get(k)!r} there, {manifest[k]!r} asked" for k in manifest
                   if k != "sequences" and existing.get(k) != manifest[k]]
        if differs:
            raise ValueError(f"{manifest_path.parent} already holds a procedural benchmark made with other parameters "
                             f"({'; '.join(differs)}); choose another folder or delete it")
    atomic_write_text(manifest_path, json.dumps({**manifest, "complete": False}, indent=2) + "\n")
    folders = []
    for number, plan in enumerate(plans, start=1):
        folders.append(write_sequence(root, layout, plan))
        if progress is not None:
            progress(number, len(plans), plan.name)
    manifest["groundtruth_sha256"] = groundtruth_digest(folders)
    manifest["complete"] = True
    write_listing(root, layout, [plan.name for plan in plans], split=layout_split(layout, split))
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    subset = layout_split(layout, split)
    return Benchmark(root=root, layout=layout, subset=subset, names=tuple(p.name for p in plans), manifest=manifest)


__all__ = ["make_benchmark", "plan_benchmark", "Benchmark", "render_sequence", "plan_sequence", "RenderedFrame",
           "ScenePlan", "PHOTOGRAPHS", "SPLITS", "LAYOUTS", "CHALLENGES", "MIN_VISIBLE", "split_photographs",
           "load_photograph", "GENERATOR_VERSION", "benchmark_photographs"]
