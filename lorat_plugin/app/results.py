"""Evaluation folders written by ``lorat evaluate``, read for the page: scores per sequence, every tracker's boxes,
IoU per frame and the frames where a tracker loses the target.

The boxes are the records' (``records/<sequence>_<run>.npz``, docs/evaluation.md), 0-based as the ground truth the
benchmark's reader returns; the scores are ``lorat report``'s (``evaluation.evaluate`` on the same folders), and the
trackers' colours are the report's (``palette.tracker_colours`` on the same order of trackers).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import load_dataset
from ..evaluation import evaluate, evaluated_sequences, load_records, load_results, per_sequence_scores
from ..evaluation.records import read_run_info
from ..geometry import rect_iou
from ..palette import GROUND_TRUTH, frame_number, hex_colour, numbering_note, tracker_colours


def _listed(values: np.ndarray, decimals: int) -> list[Any]:
    """Floats for JSON, ``None`` where a value is unknown (NaN is not JSON)."""
    return [None if not np.isfinite(v) else round(float(v), decimals) for v in np.asarray(values).reshape(-1)]


def lost_frames(iou: np.ndarray, visible: np.ndarray) -> list[int]:
    """Frames where the tracker loses the target: the box stops overlapping a visible target it overlapped at the
    previous visible frame (or at the start)."""
    lost, overlapping = [], True
    for index, (value, seen) in enumerate(zip(iou, visible)):
        if not seen or not np.isfinite(value):
            continue
        if value <= 0 and overlapping and index > 0:
            lost.append(index)
        overlapping = value > 0
    return lost


class Results:
    """One or more evaluation folders of the same benchmark, compared as ``lorat report A B ...`` compares them."""

    def __init__(self, folders: list[Path]) -> None:
        infos = []
        for folder in folders:
            info = read_run_info(folder)
            if info is None:
                raise ValueError(f"{folder.name} is not an evaluation folder (no run.json): pick one written by "
                                 "`lorat evaluate`")
            infos.append(info)
        benchmarks = {(info.get("dataset"), info.get("split")) for info in infos}
        if len(benchmarks) > 1:
            raise ValueError("the folders hold results of different benchmarks: " +
                             ", ".join(f"{d} {s or ''}".strip() for d, s in sorted(benchmarks, key=str)))
        first = infos[0]
        self.dataset, self.split = first["dataset"], first.get("split")
        root = Path(first["root"]).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"the benchmark of {folders[0].name} is not at {root} any more")
        # an evaluation of a subset: that subset, as `lorat report` scores it
        evaluated = evaluated_sequences(load_dataset(self.dataset, root, self.split), first, self.dataset)
        self.sequences = {s.name: s for s in evaluated}
        ordered = list(self.sequences.values())
        records = [load_records(folder) for folder in folders]  # evaluation folders: run.json was read above
        trackers = [load_results(folder, self.dataset, ordered, records=read)
                    for folder, read in zip(folders, records)]
        self.metrics = evaluate(self.dataset, ordered, trackers, split=self.split)
        self.names = list(self.metrics["trackers"])  # evaluate's names: two folders of one tracker kept apart
        self.colours = tracker_colours(self.names)
        self.records = dict(zip(self.names, records))
        self.scores = {name: per_sequence_scores(entry) for name, entry in self.metrics["trackers"].items()}

    def overview(self) -> dict[str, Any]:
        """Trackers with their colours, and the sequences worst first by the first tracker's primary score (the
        order of the report's per-sequence table)."""
        first = self.scores[self.names[0]]
        worst = sorted(first, key=lambda s: (next(iter(first[s].values())), s))
        title = f"{self.metrics['title']}{' ' + self.split if self.split else ''}"
        return {"title": title, "dataset": self.dataset,
                "ground_truth": hex_colour(GROUND_TRUTH),
                "trackers": [{"name": n, "colour": hex_colour(self.colours[n])} for n in self.names],
                "metrics": list(next(iter(first.values()))) if first else [],
                "sequences": [{"name": s, "frames": len(self.sequences[s]),
                               "scores": [[round(v, 1) for v in self.scores[n].get(s, {}).values()]
                                          for n in self.names]}
                              for s in worst]}

    def sequence(self, name: str) -> dict[str, Any]:
        """The ground truth, every tracker's boxes (run 1), IoU per frame and lost frames of one sequence."""
        sequence = self._sequence(name)
        truth = np.where(sequence.visible[:, None], sequence.boxes, np.nan)
        trackers = []
        for tracker in self.names:
            runs = self.records[tracker].get(name, {})
            record = runs[min(runs)]
            iou = np.where(sequence.visible & np.isfinite(sequence.boxes).all(axis=1),
                           rect_iou(record.boxes, np.nan_to_num(sequence.boxes)), np.nan)
            trackers.append({"name": tracker, "colour": hex_colour(self.colours[tracker]), "run": record.run,
                             "boxes": [_listed(b, 3) for b in record.boxes], "iou": _listed(iou, 4),
                             "lost": lost_frames(iou, sequence.visible)})
        numbers = [frame_number(path, index) for index, path in enumerate(sequence.frames)]
        return {"name": name, "frames": len(sequence), "numbers": numbers,
                "numbering": numbering_note(numbers[0]) if numbers else "",
                "ground_truth": [_listed(b, 3) if np.isfinite(b).all() else None for b in truth],
                "trackers": trackers}

    def frame_file(self, name: str, index: int) -> Path:
        sequence = self._sequence(name)
        if not 0 <= index < len(sequence):
            raise ValueError(f"{name} has no frame {index}")
        return Path(sequence.frames[index])

    def _sequence(self, name: str):
        if name not in self.sequences:
            raise ValueError(f"no sequence {name!r} in these results")
        return self.sequences[name]
