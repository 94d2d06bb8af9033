"""Result layouts, each written exactly as its consumer reads it, and read back for reports and packing.

All layouts are derived from the lossless records (records.py), in the benchmark's box convention (+1 on x, y for
LaSOT/OTB) with 3 decimals; the table of layouts, their folders and their consumers is in docs/evaluation.md,
"Result files". Zips have fixed timestamps and sorted members: the same results give the same bytes.
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lorat_plugin.data.annotations import format_table, read_boxes
from lorat_plugin.data.datasets.names import name_problem
from lorat_plugin.data.sequence import Sequence
from lorat_plugin.files import atomic_write_bytes, atomic_write_text

from .benchmarks import FORMATS, benchmark
from .records import Record

ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def safe_name(name: str) -> str:
    """A tracker name usable as one path component."""
    cleaned = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name.strip())
    if not cleaned.strip("._"):
        raise ValueError(f"tracker name {name!r} has no usable characters")
    return cleaned


def native_boxes(boxes: np.ndarray, dataset: str, sign: float = 1.0) -> np.ndarray:
    """Internal 0-based boxes -> the benchmark's file convention (``sign=-1``: back)."""
    boxes = np.array(boxes, dtype=np.float64, copy=True)
    if benchmark(dataset).one_based:
        boxes[:, :2] += sign
    return boxes


def run_folder(tracker: str, run: int, runs: int, suffix: str = "") -> str:
    return f"{tracker}{suffix}" if runs == 1 else f"{tracker}_{run:03d}{suffix}"


def pytracking_name(sequence: str, dataset: str) -> str:
    """pytracking's sequence names: a dataset prefix (uav_, nfs_) and ``Jogging_1`` for got10k's ``Jogging.1``."""
    head, dot, tail = sequence.rpartition(".")
    return benchmark(dataset).pytracking_prefix + (f"{head}_{tail}" if dot and tail.isdigit() else sequence)


def format_dir(fmt: str, dataset: str, split: str | None = None) -> str:
    """The folder of a layout inside an evaluation folder. The got10k-toolkit layouts use the toolkit's own names
    (``GOT-10k``, ``OTB2015``, ``UAV123``, ``NfS/30``), so that ``Experiment*(root, result_dir=<output>)`` reads
    them."""
    if fmt == "got10k":
        return "GOT-10k"
    if fmt == "otb":
        if dataset == "otb":
            from lorat_plugin.data.datasets.otb import VERSIONS

            return f"OTB{VERSIONS.get((split or 'otb100').lower(), 2015)}"
        if dataset == "uav123":
            return (split or "UAV123").upper()
        if dataset == "nfs":
            return f"NfS/{int(str(split or 30).lower().removesuffix('fps'))}"
    return fmt


def write_format(fmt: str, output_dir: Path, tracker: str, dataset: str,
                 records: dict[str, dict[int, Record]], split: str | None = None) -> Path:
    """Write one layout for every sequence in ``records`` (sequence -> run -> record); returns its folder."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown result format {fmt!r} (expected one of {', '.join(FORMATS)})")
    folder = Path(output_dir) / format_dir(fmt, dataset, split)
    runs = max((max(by_run) for by_run in records.values()), default=1)
    for sequence, by_run in sorted(records.items()):
        for run, record in sorted(by_run.items()):
            boxes = format_table(native_boxes(record.boxes, dataset), "%.3f", "\t" if fmt == "pytracking" else ",")
            if fmt == "got10k":
                atomic_write_text(folder / tracker / sequence / f"{sequence}_{run:03d}.txt", boxes)
                continue
            base = folder / run_folder(tracker, run, runs, "_tracking_result" if fmt == "lasot" else "")
            name = pytracking_name(sequence, dataset) if fmt == "pytracking" else sequence
            atomic_write_text(base / f"{name}.txt", boxes)
            if fmt == "otb":
                atomic_write_text(base / "times" / f"{sequence}_time.txt", format_table(record.times, "%.8f", ","))
            elif fmt == "pytracking":
                atomic_write_text(base / f"{name}_time.txt", format_table(record.times, "%f", ","))
        if fmt == "got10k":  # one column per run, as ExperimentGOT10k._record appends them
            times = np.stack([by_run[r].times for r in sorted(by_run)], axis=1)
            atomic_write_text(folder / tracker / sequence / f"{sequence}_time.txt", format_table(times, "%.8f", ","))
    return folder


def write_zip(path: Path, members: dict[str, bytes | None]) -> Path:
    """A deterministic zip: ``members`` maps archive names to bytes (``None`` = a directory entry)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            data = members[name]
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = (0o40755 << 16) | 0x10 if data is None else 0o644 << 16
            if data is not None:
                info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data or b"")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def run_files(folder: Path, sequence: str) -> list[Path]:
    """The got10k layout's box files of one sequence, ``<sequence>_001.txt``, ``_002``, ... in run order. Names are
    compared as strings: a glob would read ``seq[1]`` as a pattern and miss its files."""
    if not folder.is_dir():
        return []
    prefix = f"{sequence}_"
    found = [entry.name for entry in os.scandir(folder) if entry.name.startswith(prefix)
             and re.fullmatch(r"[0-9]{3}\.txt", entry.name[len(prefix):])]
    return [folder / name for name in sorted(found)]


def pack_got10k(results: Path, path: Path, sequences: list[str] | None = None) -> Path:
    """The GOT-10k server zip from a got10k-layout tracker folder: ``<seq>/<seq>_001.txt`` + ``<seq>_time.txt``."""
    results = Path(results)
    found = sorted(d.name for d in results.iterdir() if d.is_dir() and run_files(d, d.name))
    if not found:
        raise FileNotFoundError(f"no GOT-10k results (<seq>/<seq>_001.txt) in {results}")
    _check_complete(found, sequences, results)
    members: dict[str, bytes | None] = {}
    for sequence in found:
        folder = results / sequence
        box_files = run_files(folder, sequence)
        time_file = folder / f"{sequence}_time.txt"
        if not time_file.is_file():
            raise FileNotFoundError(f"{time_file} missing: the GOT-10k server needs a time file for every sequence")
        length = len(read_result_boxes(box_files[0]))
        for box_file in box_files[1:]:
            read_result_boxes(box_file, length)
        times = read_times(time_file, length)
        if times is None or times.shape[1] != len(box_files):
            raise ValueError(f"{time_file}: not one column per run ({len(box_files)} runs)")
        members[f"{sequence}/"] = None
        for file in box_files + [time_file]:
            members[f"{sequence}/{file.name}"] = file.read_bytes()
    return write_zip(path, members)


def pack_trackingnet(results: Path, path: Path, sequences: list[str] | None = None) -> Path:
    """The TrackingNet server zip: ``<seq>.txt`` at the root (the server matches files by base name)."""
    results = Path(results)
    files = sorted(p for p in results.glob("*.txt") if not p.name.endswith("_time.txt"))
    if not files:
        raise FileNotFoundError(f"no TrackingNet results (<seq>.txt) in {results}")
    _check_complete([p.stem for p in files], sequences, results)
    for file in files:
        read_result_boxes(file)  # refuse to pack a malformed file
    return write_zip(path, {file.name: file.read_bytes() for file in files})


def _check_complete(found: list[str], expected: list[str] | None, results: Path) -> None:
    missing = sorted(set(expected or ()) - set(found))
    if missing:
        raise ValueError(f"{len(missing)} of {len(expected)} sequences have no results in {results}: "
                         f"{_listed(missing)}")


def _listed(names: list[str], shown: int = 10) -> str:
    listed = ", ".join(repr(n) if name_problem(n) else n for n in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def check_zip(path: Path, fmt: str, sequences: list[str]) -> None:
    """Read a written server zip back: every sequence must have its box file (GOT-10k: and its time file); an error
    names the ones missing."""
    with zipfile.ZipFile(path) as archive:
        members = set(archive.namelist())
    if fmt == "got10k":
        missing = [s for s in sequences if not {f"{s}/{s}_001.txt", f"{s}/{s}_time.txt"} <= members]
    else:
        missing = [s for s in sequences if f"{s}.txt" not in members]
    if missing:
        raise ValueError(f"{path}: {len(missing)} of {len(sequences)} sequences are not in the zip: "
                         f"{_listed(missing)}")


def read_result_boxes(path: Path, frames: int | None = None) -> np.ndarray:
    """A result file (comma, tab or space separated ``x,y,w,h`` rows) as an N x 4 float64 array; with ``frames``,
    N must be that."""
    boxes = read_boxes(Path(path), kind="result")
    if frames is not None and len(boxes) != frames:
        raise ValueError(f"{path}: {len(boxes)} result boxes for {frames} frames")
    return boxes


def read_times(path: Path, frames: int) -> np.ndarray | None:
    """A time file as ``frames`` x runs seconds (got10k: one column per run); None when absent."""
    path = Path(path)
    text = path.read_text().strip() if path.is_file() else ""
    if not text:
        return None
    try:
        times = np.loadtxt(io.StringIO(text.replace(",", " ")), ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: not a table of seconds per frame ({e})") from None
    if len(times) != frames:
        raise ValueError(f"{path}: {len(times)} times for {frames} frames")
    return times


@dataclass
class TrackerResults:
    """One tracker's results on one benchmark: boxes in the benchmark's file convention, as its tool reads them."""

    name: str
    runs: dict[str, list[np.ndarray]]               # sequence -> one N x 4 array per run
    times: dict[str, np.ndarray] = field(default_factory=dict)  # sequence -> N x runs seconds (may be absent)
    source: str = ""
    model: dict = field(default_factory=dict)  # an evaluation folder's model identity, precision and backend
    how_it_ran: dict = field(default_factory=dict)  # an evaluation folder's speed, "timed" and environments


def read_layout(folder: Path, sequences: list[Sequence], dataset: str, *, name: str | None = None) -> TrackerResults:
    """Results of one tracker from a folder in any of the layouts above; every sequence must have results."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder not found: {folder}")
    runs: dict[str, list[np.ndarray]] = {}
    times: dict[str, np.ndarray] = {}
    missing = []
    for s in sequences:
        sequence, n = s.name, len(s)
        nested = run_files(folder / sequence, sequence)
        if nested:
            runs[sequence] = [read_result_boxes(p, n) for p in nested]
            t = read_times(folder / sequence / f"{sequence}_time.txt", n)
        else:
            candidates = [folder / f"{sequence}.txt", folder / f"{pytracking_name(sequence, dataset)}.txt"]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                missing.append(sequence)
                continue
            runs[sequence] = [read_result_boxes(found, n)]
            t = read_times(folder / "times" / f"{sequence}_time.txt", n)
            if t is None:
                t = read_times(found.with_name(f"{found.stem}_time.txt"), n)
        if t is not None:
            times[sequence] = t
    if missing:
        raise FileNotFoundError(f"{folder}: no results for {len(missing)} of {len(sequences)} sequences, "
                                f"e.g. {missing[0]}")
    return TrackerResults(name or folder.name.removesuffix("_tracking_result"), runs, times, str(folder))


def merge_runs(parts: list[TrackerResults], name: str) -> TrackerResults:
    """Several single-run folders of one tracker (``<tracker>_001``, ``_002``) as one multi-run result."""
    runs: dict[str, list[np.ndarray]] = {}
    times: dict[str, np.ndarray] = {}
    for part in parts:
        for sequence, boxes in part.runs.items():
            runs.setdefault(sequence, []).extend(boxes)
            if sequence in part.times:
                times[sequence] = (part.times[sequence] if sequence not in times
                                   else np.concatenate([times[sequence], part.times[sequence]], axis=1))
    return TrackerResults(name, runs, times, os.pathsep.join(p.source for p in parts))
