"""The lossless record of one run of a tracker over one sequence, and the evaluation folder's ``run.json``.

``<output>/records/<sequence>_<run:03d>.npz`` holds the float64 boxes (0-based ``x, y, w, h``, frame 0 = the
initial box), the per-frame confidence and time in seconds; it is written atomically once its sequence is complete.
Every result layout is derived from records.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lorat_plugin.data.sequence import Sequence
from lorat_plugin.files import atomic_write_bytes, atomic_write_text

RECORDS_DIR = "records"
RUN_FILE = "run.json"
SCHEMA_VERSION = 2  # 1: before the model identity and the per-record fingerprint (still read)


@dataclass
class Record:
    sequence: str
    run: int             # 1-based repetition index
    boxes: np.ndarray    # N x 4 float64, 0-based xywh
    scores: np.ndarray   # N float64 (1.0 on frame 0)
    times: np.ndarray    # N float64 seconds per frame
    fingerprint: str | None = None  # of what was tracked (sequence_fingerprint); None in records before schema 2

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
             sequence=np.array(record.sequence), run=np.array(record.run),
             fingerprint=np.array(record.fingerprint or ""), schema_version=np.array(SCHEMA_VERSION))
    atomic_write_bytes(path, buffer.getvalue())
    failure_path(output_dir, record.sequence, record.run).unlink(missing_ok=True)
    return path


def load_record(path: Path) -> Record:
    try:
        with np.load(path, allow_pickle=False) as data:
            fingerprint = str(data["fingerprint"]) if "fingerprint" in data.files else ""
            return Record(str(data["sequence"]), int(data["run"]), data["boxes"], data["scores"], data["times"],
                          fingerprint or None)
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


def sequence_fingerprint(sequence: Sequence) -> str:
    """What a sequence was tracked on, wherever the benchmark lies: a short SHA-256 of its name, its annotation as
    read (boxes, visibility) and its frame file names (not their folders, so a moved benchmark keeps it)."""
    digest = hashlib.sha256(sequence.name.encode())
    digest.update(np.ascontiguousarray(sequence.boxes, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(sequence.visible, dtype=bool).tobytes())
    digest.update("\n".join(Path(f).name for f in sequence.frames).encode())
    return digest.hexdigest()[:16]


def failure_path(output_dir: Path, sequence: str, run: int) -> Path:
    """Where a run that failed (e.g. on an unreadable frame) leaves its error; removed when it succeeds."""
    return Path(output_dir) / RECORDS_DIR / f"{sequence}_{run:03d}.failed.txt"


def save_failure(output_dir: Path, sequence: str, run: int, message: str) -> None:
    atomic_write_text(failure_path(output_dir, sequence, run), message + "\n")


def load_failures(output_dir: Path) -> dict[str, str]:
    """The runs that failed and have no record yet: ``<sequence>_<run>`` -> the error."""
    return {p.name.removesuffix(".failed.txt"): p.read_text().strip()
            for p in sorted((Path(output_dir) / RECORDS_DIR).glob("*.failed.txt"))}


@contextmanager
def exclusive(output_dir: Path) -> Iterator[None]:
    """Hold the evaluation folder for one run: a second run on it is refused while this one lives. The lock is
    ``flock`` on ``.lock``: the kernel releases it when the process ends, however it ends, so nothing goes stale."""
    import fcntl

    path = Path(output_dir) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:  # closing it releases the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{output_dir} is in use by another `lorat evaluate` run (lock {path}); wait for it to "
                             "end or use another --output") from None
        yield


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
