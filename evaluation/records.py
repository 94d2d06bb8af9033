"""The lossless record of one run of a tracker over one sequence, and the evaluation folder's ``run.json``.

``<output>/records/<sequence>_<run:03d>.npz`` holds the float64 boxes (0-based ``x, y, w, h``, frame 0 = the
initial box), the per-frame confidence and time in seconds; it is written atomically once its sequence is complete.
Every result layout is derived from records.

A frame's time is the wall time of the tracker call that produced it, *not* divided by the sequences in that call
(from schema 3; before, it was divided, the reference's convention). Beside it, ``batch`` holds how many sequences
that call advanced and ``warmup`` marks the frames of calls that do not measure the steady speed (every
initialisation, and the first call with each number of sequences). :func:`speed_of` turns records into the one speed
figure: frames per second *per sequence*.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from lorat_plugin.data.sequence import Sequence
from lorat_plugin.files import atomic_write_bytes, atomic_write_text

RECORDS_DIR = "records"
RUN_FILE = "run.json"
# 1: before the model identity and the per-record fingerprint; 2: before undivided times, warm-up and environments
# (both still read)
SCHEMA_VERSION = 3


@dataclass
class Record:
    sequence: str
    run: int             # 1-based repetition index
    boxes: np.ndarray    # N x 4 float64, 0-based xywh
    scores: np.ndarray   # N float64 (1.0 on frame 0)
    times: np.ndarray    # N float64 seconds per frame: the producing call's time (schema < 3: divided by its batch)
    fingerprint: str | None = None  # of what was tracked (sequence_fingerprint); None in records before schema 2
    warmup: np.ndarray | None = None  # N bool: frame of an initialisation or a batch shape's first call (schema 3)
    batch: np.ndarray | None = None   # N int: sequences in the call that produced the frame (schema 3)
    environment: int | None = None    # index into run.json's "environments" (schema 3)
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        if self.warmup is not None:
            self.warmup = np.asarray(self.warmup, dtype=bool).reshape(-1)
        if self.batch is not None:
            self.batch = np.asarray(self.batch, dtype=np.int64).reshape(-1)
        lengths = {len(a) for a in (self.boxes, self.scores, self.times, self.warmup, self.batch) if a is not None}
        if len(lengths) != 1:
            raise ValueError(f"record {self.sequence} run {self.run}: {len(self.boxes)} boxes, "
                             f"{len(self.scores)} scores, {len(self.times)} times"
                             + ("" if self.warmup is None else f", {len(self.warmup)} warm-up flags")
                             + ("" if self.batch is None else f", {len(self.batch)} batch sizes"))


def record_path(output_dir: Path, sequence: str, run: int) -> Path:
    return Path(output_dir) / RECORDS_DIR / f"{sequence}_{run:03d}.npz"


def save_record(output_dir: Path, record: Record) -> Path:
    path = record_path(output_dir, record.sequence, record.run)
    buffer = io.BytesIO()
    timing = {}
    if record.warmup is not None and record.batch is not None:
        timing = {"warmup": record.warmup, "batch": record.batch}
    np.savez(buffer, boxes=record.boxes, scores=record.scores, times=record.times, **timing,
             environment=np.array(-1 if record.environment is None else record.environment),
             sequence=np.array(record.sequence), run=np.array(record.run),
             fingerprint=np.array(record.fingerprint or ""), schema_version=np.array(record.schema))
    atomic_write_bytes(path, buffer.getvalue())
    failure_path(output_dir, record.sequence, record.run).unlink(missing_ok=True)
    return path


def load_record(path: Path) -> Record:
    try:
        with np.load(path, allow_pickle=False) as data:
            fingerprint = str(data["fingerprint"]) if "fingerprint" in data.files else ""
            environment = int(data["environment"]) if "environment" in data.files else -1
            schema = int(data["schema_version"]) if "schema_version" in data.files else 1
            return Record(str(data["sequence"]), int(data["run"]), data["boxes"], data["scores"], data["times"],
                          fingerprint or None, data["warmup"] if "warmup" in data.files else None,
                          data["batch"] if "batch" in data.files else None,
                          environment if environment >= 0 else None, schema)
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


PER_SEQUENCE = "per sequence"  # frames over the undivided time of the calls that advanced each sequence
DIVIDED = "divided"            # schema < 3: each call's time was divided by the sequences in it
TIME_FILES = "time files"      # another tool's per-frame times, frame 0 left out


@dataclass
class Speed:
    """How fast a tracker ran over some records (docs/evaluation.md, "Speed"). ``fps`` is the headline: frames per
    second per sequence. Warm-up frames (initialisations, the first call with each number of sequences) are
    counted apart and left out of every figure."""

    convention: str = PER_SEQUENCE
    frames: int = 0              # frames after the first of each sequence, warm-up left out
    seconds: float = 0.0         # the time of the calls that produced them, each frame charged its whole call
    call_seconds: float = 0.0    # the same calls, each counted once (for the throughput)
    warmup_frames: int = 0
    warmup_seconds: float = 0.0  # the warm-up calls, each counted once
    batch: int = 0               # most sequences in one call (0: unknown)
    older_records: int = 0       # records of the divided convention left out beside per-sequence ones

    @property
    def fps(self) -> float | None:
        return self.frames / self.seconds if self.seconds > 0 else None

    @property
    def throughput(self) -> float | None:
        """All sequences' frames over the tracker's time at batch ``batch`` (one process)."""
        if self.convention != PER_SEQUENCE or self.call_seconds <= 0:
            return None
        return self.frames / self.call_seconds

    def as_dict(self) -> dict[str, Any]:
        return {"fps": self.fps, "throughput": self.throughput, "convention": self.convention,
                "frames": self.frames, "seconds": self.seconds, "call_seconds": self.call_seconds,
                "warmup_frames": self.warmup_frames, "warmup_seconds": self.warmup_seconds, "batch": self.batch,
                "older_records": self.older_records}


def speed_of(records: Iterable[Record]) -> Speed:
    """The speed of ``records``. Records of schema 3 give the per-sequence figure; where a folder holds only older
    records (times divided by the sequences per call, and no warm-up marks) their figure is that older one,
    labelled ``divided``: it cannot be recomputed without the sizes of the calls."""
    records = sorted(records, key=lambda r: (r.sequence, r.run))  # one summation order: the same float everywhere
    current = [r for r in records if r.schema >= 3]
    if not current:
        speed = Speed(DIVIDED)
        for record in records:
            times = record.times[1:]
            times = times[np.isfinite(times) & (times > 0)]
            speed.frames += len(times)
            speed.seconds += float(times.sum())
        speed.call_seconds = speed.seconds
        return speed
    speed = Speed(PER_SEQUENCE, older_records=len(records) - len(current))
    for record in current:
        count = len(record.times)
        warmup = record.warmup if record.warmup is not None else np.arange(count) == 0
        batch = record.batch if record.batch is not None else np.ones(count, dtype=np.int64)
        valid = np.isfinite(record.times) & (record.times > 0) & (batch > 0)
        counted = valid & ~warmup & (np.arange(count) > 0)
        skipped = valid & warmup
        speed.frames += int(counted.sum())
        speed.seconds += float(record.times[counted].sum())
        speed.call_seconds += float((record.times[counted] / batch[counted]).sum())
        speed.warmup_frames += int(skipped.sum())
        speed.warmup_seconds += float((record.times[skipped] / batch[skipped]).sum())
        speed.batch = max(speed.batch, int(batch.max(initial=0)))
    return speed


def speed_of_times(times: Iterable[np.ndarray]) -> Speed:
    """The speed of another tool's time files (one N x runs array per sequence): frames after the first over their
    summed times, as a one-sequence-at-a-time tracker (the got10k toolkit's way) records them."""
    speed = Speed(TIME_FILES)
    for table in times:
        values = np.asarray(table, dtype=np.float64).reshape(len(table), -1)[1:].ravel()
        values = values[np.isfinite(values) & (values > 0)]
        speed.frames += len(values)
        speed.seconds += float(values.sum())
    return speed
