"""Training sources in a compact form, the per-epoch sequence plan and template/search frame-pair sampling.

The readers give ``list[Sequence]`` with a Python ``Path`` per frame; TrackingNet alone has ~14M frames. Every
DataLoader worker touching millions of Python objects would copy them page by page (fork + reference counts), so a
source is flattened once into a few numpy arrays per dataset: one directory per track, fixed-width frame names,
float32 boxes and a validity flag per frame. Tracks that share their frames (the objects of one COCO image) form one
*video*; the sampler picks a video, then one of its tracks, as the reference does.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..data import Sequence
from ..files import atomic_path
from .config import ConfigError, DatasetEntry, resolve_path

log = logging.getLogger(__name__)


@dataclass
class CompactDataset:
    """The usable tracks of one training source. Frame ``f`` of track ``t`` is row ``track_start[t] + f``."""

    name: str
    weight: float
    dirs: np.ndarray  # unique directories (bytes)
    track_dir: np.ndarray  # int32 [T]: index into dirs
    track_start: np.ndarray  # int64 [T + 1]: frame rows of each track
    frame_names: np.ndarray  # bytes [F]: file name (or path) relative to the track's directory
    boxes: np.ndarray  # float32 [F, 4]: x, y, w, h
    valid: np.ndarray  # bool [F]: visible with a finite, non-empty box
    video_start: np.ndarray  # int64 [V + 1]: tracks of each video (contiguous)

    @property
    def num_videos(self) -> int:
        return len(self.video_start) - 1

    @property
    def num_tracks(self) -> int:
        return len(self.track_start) - 1

    def frame_path(self, track: int, frame: int) -> str:
        directory = os.fsdecode(self.dirs[self.track_dir[track]])
        return os.path.join(directory, os.fsdecode(self.frame_names[self.track_start[track] + frame]))

    def track_valid(self, track: int) -> np.ndarray:
        return self.valid[self.track_start[track]:self.track_start[track + 1]]

    def box(self, track: int, frame: int) -> np.ndarray:
        return self.boxes[self.track_start[track] + frame].astype(np.float64)


def compact(name: str, weight: float, sequences: Iterable[Sequence]) -> CompactDataset:
    """Flatten sequences; tracks without one usable frame are dropped; tracks sharing frames become one video."""
    dirs: dict[str, int] = {}
    videos: dict[tuple, list[tuple[int, list[str], np.ndarray, np.ndarray]]] = {}  # tracks of each video
    dropped = 0
    for seq in sequences:
        box = np.asarray(seq.boxes, dtype=np.float64)
        ok = np.asarray(seq.visible, dtype=bool) & np.isfinite(box).all(axis=1)
        ok[ok] &= (box[ok, 2] > 0) & (box[ok, 3] > 0)
        if not ok.any():
            dropped += 1
            continue
        frames = [os.fspath(f) for f in seq.frames]
        split = [os.path.split(f) for f in frames]
        parent = split[0][0]
        if all(head == parent for head, _ in split):
            rel = [tail for _, tail in split]
        else:  # frames in several folders: names relative to their common folder
            parent = os.path.commonpath(frames)
            rel = [os.path.relpath(f, parent) for f in frames]
        dir_id = dirs.setdefault(parent, len(dirs))
        videos.setdefault((dir_id, rel[0], rel[-1], len(rel)), []).append((dir_id, rel, box.astype(np.float32), ok))
    if dropped:
        log.info("%s: %d sequence(s) without a single visible, valid box dropped", name, dropped)
    if not videos:
        raise ConfigError(f"training source {name!r} has no sequence with a visible target")
    tracks = [track for members in videos.values() for track in members]  # the tracks of each video side by side
    return CompactDataset(
        name=name, weight=float(weight),
        dirs=np.asarray([os.fsencode(d) for d in dirs], dtype=bytes),
        track_dir=np.asarray([t[0] for t in tracks], dtype=np.int32),
        track_start=np.cumsum([0] + [len(t[1]) for t in tracks], dtype=np.int64),
        frame_names=np.asarray([os.fsencode(n) for t in tracks for n in t[1]], dtype=bytes),
        boxes=np.concatenate([t[2] for t in tracks]), valid=np.concatenate([t[3] for t in tracks]),
        video_start=np.cumsum([0] + [len(members) for members in videos.values()], dtype=np.int64))


def select_sequences(sequences: list[Sequence], wanted: list[str] | list[int], entry: DatasetEntry,
                     split_root: Path | None, where: str) -> list[Sequence]:
    """The named sequences, or those at 0-based indices into ``split_root/list.txt`` (else the sorted names)."""
    if wanted and isinstance(wanted[0], int):
        listing = split_root / "list.txt" if split_root is not None else None
        if listing is not None and listing.is_file():
            order = [s.strip() for s in listing.read_text().splitlines() if s.strip()]
        else:
            order = sorted(s.name for s in sequences)
        bad = [i for i in wanted if i >= len(order)]
        if bad:
            raise ConfigError(f"{where}.sequences_file: index {bad[0]} is out of range for {len(order)} sequences "
                              f"in {entry.name} {entry.split or ''}")
        wanted = [order[i] for i in wanted]
    by_name = {s.name: s for s in sequences}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise ConfigError(f"{where}.sequences_file: {len(missing)} sequence(s) not in {entry.name} at {entry.root}, "
                          f"e.g. {missing[0]!r}")
    return [by_name[n] for n in dict.fromkeys(wanted)]


def load_entry(entry: DatasetEntry, where: str) -> list[Sequence]:
    """Read one configured source through the dataset readers, keeping only the listed sequences if asked."""
    from ..data.datasets import load_dataset

    root = resolve_path(entry.root, f"{where}.root")
    if not root.exists():
        raise FileNotFoundError(f"{where}.root: dataset folder not found: {root}")
    sequences = load_dataset(entry.name, root, split=entry.split)
    if entry.sequences_file is not None:
        path = resolve_path(entry.sequences_file, f"{where}.sequences_file")
        if not path.is_file():
            raise FileNotFoundError(f"sequences file not found: {path}")
        # One name per line, or indices (GOT-10k's got10k_vot_train_split.txt); "#" starts a comment line.
        items = [i for i in map(str.strip, path.read_text(encoding="utf-8").splitlines()) if i and i[0] != "#"]
        wanted = [int(i) for i in items] if items and all(i.isdigit() for i in items) else items
        split_root = root / entry.split if entry.split and (root / entry.split).is_dir() else root
        sequences = select_sequences(sequences, wanted, entry, split_root, where)
    return sequences


@dataclass
class TrainingSource:
    datasets: list[CompactDataset]

    @property
    def weights(self) -> np.ndarray:
        w = np.asarray([d.weight for d in self.datasets], dtype=np.float64)
        return w / w.sum()

    def describe(self) -> str:
        return ", ".join(f"{d.name}: {d.num_videos} videos / {d.num_tracks} tracks ({w:.0%})"
                         for d, w in zip(self.datasets, self.weights))


def build_source(entries: list[DatasetEntry], where: str = "data.datasets", cache: Path | None = None
                 ) -> TrainingSource:
    """Read and flatten every configured source. With ``cache``, each flattened source is stored there
    (``<key>.npz``, keyed by the entry) and read back next time: the other ranks of a run and a resumed run skip
    the annotation files (TrackingNet's 30k files take minutes)."""
    datasets = []
    for i, entry in enumerate(entries):
        label = entry.name if entry.split is None else f"{entry.name}-{entry.split}"
        key = hashlib.sha1(json.dumps(dataclasses.asdict(entry), sort_keys=True).encode()).hexdigest()[:16]
        cached = cache / f"{label}-{key}.npz" if cache is not None else None
        if cached is not None and cached.is_file():
            with np.load(cached, allow_pickle=False) as arrays:
                datasets.append(CompactDataset(label, float(entry.weight), **{k: arrays[k] for k in _ARRAYS}))
            continue
        datasets.append(compact(label, entry.weight, load_entry(entry, f"{where}.{i}")))
        if cached is not None:
            with atomic_path(cached) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
                np.savez(f, **{name: getattr(datasets[-1], name) for name in _ARRAYS})
    return TrainingSource(datasets)


_ARRAYS = ("dirs", "track_dir", "track_start", "frame_names", "boxes", "valid", "video_start")


# ---- sampling ---------------------------------------------------------------------------------------------------

def epoch_plan(source: TrainingSource, samples: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(dataset index, video index) for every sample of an epoch, a pure function of (seed, epoch).

    Each dataset gets ``weight x samples`` slots (the last one the remainder), filled with concatenated shuffled
    permutations of its videos; then all slots are shuffled together (the reference's random sequence picker).
    """
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    quotas = (source.weights * samples).astype(np.int64)
    quotas[-1] = samples - quotas[:-1].sum()
    dataset_ids, video_ids = [], []
    for index, (dataset, quota) in enumerate(zip(source.datasets, quotas)):
        repeats = -(-int(quota) // dataset.num_videos)
        perms = [rng.permutation(dataset.num_videos) for _ in range(repeats)]
        video_ids.append(np.concatenate(perms)[:quota] if perms else np.zeros(0, np.int64))
        dataset_ids.append(np.full(quota, index, dtype=np.int64))
    order = rng.permutation(samples)
    return np.concatenate(dataset_ids)[order], np.concatenate(video_ids)[order]


def sample_frames(valid: np.ndarray, max_gap: int, rng: np.random.Generator) -> tuple[int, int]:
    """Template frame uniform among valid frames; search frame uniform among the other valid frames within
    ``+-max_gap``; the template frame again when there is none (one-frame tracks, isolated frames)."""
    candidates = np.flatnonzero(valid)
    z = int(candidates[rng.integers(len(candidates))]) if len(candidates) > 1 else int(candidates[0])
    near = candidates[(np.abs(candidates - z) <= max_gap) & (candidates != z)]
    x = int(near[rng.integers(len(near))]) if len(near) else z
    return z, x


def sample_track(dataset: CompactDataset, video: int, rng: np.random.Generator) -> int:
    first, end = int(dataset.video_start[video]), int(dataset.video_start[video + 1])
    return first if end - first == 1 else first + int(rng.integers(end - first))
