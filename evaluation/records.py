"""The lossless record of one run of a tracker over one sequence, and the evaluation folder's ``run.json``.

Every result layout is derived from records: ``<output>/records/<sequence>_<run:03d>.npz`` holding the float64
boxes (0-based ``x, y, w, h``, one per frame, frame 0 = the initial box), the per-frame confidence and the per-frame
time in seconds. A record is written only once its sequence is complete, atomically (``lorat_plugin.files``),
so a record that exists is whole and an interrupted run loses only the sequences in flight.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lorat_plugin.files import atomic_write_bytes, atomic_write_text

RECORDS_DIR = "records"
RUN_FILE = "run.json"


@dataclass
class Record:
    sequence: str
    run: int             # 1-based repetition index
    boxes: np.ndarray    # N x 4 float64, 0-based xywh
    scores: np.ndarray   # N float64 (1.0 on frame 0)
    times: np.ndarray    # N float64 seconds per frame

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        if not len(self.boxes) == len(self.scores) == len(self.times):
            raise ValueError(f"record {self.sequence} run {self.run}: {len(self.boxes)} boxes, "
                             f"{len(self.scores)} scores, {len(self.times)} times")


def record_path(output_dir: Path, sequence: str, run: int) -> Path:
    return Path(output_dir) / RECORDS_DIR / f"{sequence}_{run:03d}.npz"


def save_record(output_dir: Path, record: Record) -> Path:
    path = record_path(output_dir, record.sequence, record.run)
    buffer = io.BytesIO()
    np.savez(buffer, boxes=record.boxes, scores=record.scores, times=record.times,
             sequence=np.array(record.sequence), run=np.array(record.run))
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_record(path: Path) -> Record:
    try:
        with np.load(path, allow_pickle=False) as data:
            return Record(str(data["sequence"]), int(data["run"]), data["boxes"], data["scores"], data["times"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"unreadable result record {path}: {e} (delete it to re-run that sequence)") from e


def load_records(output_dir: Path) -> dict[str, dict[int, Record]]:
    """Every record under ``output_dir``: sequence name -> run -> record."""
    found: dict[str, dict[int, Record]] = {}
    folder = Path(output_dir) / RECORDS_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("*.npz")):
            record = load_record(path)
            found.setdefault(record.sequence, {})[record.run] = record
    return found


def read_run_info(output_dir: Path) -> dict[str, Any] | None:
    path = Path(output_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def write_run_info(output_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_text(Path(output_dir) / RUN_FILE, json.dumps(info, indent=2) + "\n")
