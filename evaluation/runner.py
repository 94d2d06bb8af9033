"""Run a batch tracker over benchmark sequences: batched, prefetched, resumable, shardable with torchrun.

A *batch tracker* has ``initialize(frames, boxes) -> states`` and ``track(states, frames) -> (boxes, scores)``.
``batch_size`` sequences are in flight; each tracker call advances each of them by one frame and a finished
sequence's slot goes to the next one at once. Frames are decoded ahead in a thread pool. The per-frame time is the
call's wall time divided by the sequences in that call (the reference's convention).

A record is written atomically when its sequence is complete; a new call skips the records tracked on the same
sequence (same fingerprint). A sequence whose frame cannot be read fails alone (its error is kept beside the
records and the next call retries it). One run at a time holds a folder (``records.exclusive``). Under ``torchrun``
every rank takes a disjoint share of the pending sequences (gloo on CPU coordinates them) and rank 0 writes the
result layouts after a barrier, the same files as a one-process run's.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence as Seq
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch.distributed as dist

from lorat_plugin.data.sequence import FrameError, Sequence, read_image

from .benchmarks import benchmark
from .formats import format_dir, pack_got10k, pack_trackingnet, run_folder, safe_name, write_format
from .records import (SCHEMA_VERSION, Record, exclusive, load_failures, load_record, load_records, read_run_info,
                      record_path, save_failure, save_record, sequence_fingerprint, write_run_info)

log = logging.getLogger(__name__)
BARRIER_TIMEOUT = timedelta(days=7)  # ranks that finish early wait for the slowest one at the final barrier
_gloo_group: Any = None


class BatchTracker(Protocol):
    def initialize(self, frames: list[np.ndarray], boxes: np.ndarray) -> list[Any]: ...

    def track(self, states: list[Any], frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class RunSummary:
    output_dir: Path
    tracker_name: str
    completed: list[tuple[str, int]] = field(default_factory=list)  # (sequence, run) tracked by this process
    skipped: int = 0                    # (sequence, run) pairs already done before this call
    frames: int = 0
    tracker_seconds: float = 0.0        # time spent inside the tracker's calls
    rank: int = 0
    world_size: int = 1
    outputs: list[Path] = field(default_factory=list)  # layouts and zips written (rank 0)
    retracked: list[str] = field(default_factory=list)  # records replaced: their sequence changed (rank 0)
    failures: dict[str, str] = field(default_factory=dict)  # "<sequence>_<run>" -> error, every rank's (rank 0)

    @property
    def fps(self) -> float:
        return self.frames / self.tracker_seconds if self.tracker_seconds > 0 else float("nan")


@dataclass
class _Active:
    sequence: Sequence
    run: int
    fingerprint: str
    frames: deque = field(default_factory=deque)  # futures of decoded frames, in order
    next_submit: int = 0     # next frame index to submit for decoding
    index: int = 0           # next frame index to track
    state: Any = None
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    times: np.ndarray | None = None


def run_benchmark(tracker: BatchTracker, sequences: Seq[Sequence], output_dir: str | Path, *, tracker_name: str,
                  dataset: str | None = None, split: str | None = None, root: str | Path | None = None,
                  repeats: int = 1, batch_size: int = 8, formats: Seq[str] | None = None, prefetch: int = 3,
                  decode_threads: int = 4, progress: bool = True, model: dict[str, Any] | None = None,
                  backend: str | None = None, clock: Callable[[], float] = time.perf_counter) -> RunSummary:
    """Track every sequence ``repeats`` times and write records, then the result layouts of ``formats``.

    ``dataset`` (default: the sequences' ``dataset``) picks the box convention and the default layouts
    (``evaluation.benchmarks``); ``split`` and ``root`` are only recorded in ``run.json`` for ``lorat report``.
    ``model`` is the model's identity (``ModelSpec.identity``) and ``backend`` what ran it, recorded in ``run.json``;
    a folder holding another model's results (other weights or precision) is refused.
    """
    if batch_size < 1 or repeats < 1 or prefetch < 1 or decode_threads < 1:
        raise ValueError("batch_size, repeats, prefetch and decode_threads must be >= 1")
    if not sequences:
        raise ValueError("no sequences to evaluate")
    if len({s.name for s in sequences}) != len(sequences):
        raise ValueError("sequence names must be unique within a benchmark")
    output_dir = Path(output_dir)
    dataset = benchmark(dataset or sequences[0].dataset).key  # an unknown benchmark fails before any tracking
    tracker_name = safe_name(tracker_name)
    rank, world, group, created = _distributed()
    summary = RunSummary(output_dir, tracker_name, rank=rank, world_size=world)
    lock = ExitStack()

    def prepare() -> tuple[list[tuple[str, int]], list[str]]:
        lock.enter_context(exclusive(output_dir))  # rank 0 holds it for the whole torchrun run
        return _prepare(output_dir, sequences, tracker_name, dataset, split, root, repeats, model, backend)

    try:
        pending, summary.retracked = _agree(rank, group, prepare)
        summary.skipped = len(sequences) * repeats - len(pending)
        by_name = {s.name: s for s in sequences}
        mine = [_Active(by_name[name], run, sequence_fingerprint(by_name[name])) for name, run in pending[rank::world]]
        _track_all(tracker, mine, output_dir, summary, batch_size=batch_size, prefetch=prefetch,
                   decode_threads=decode_threads, progress=progress, clock=clock)
        if group is not None:
            dist.barrier(group=group)
        if rank == 0:
            summary.failures = load_failures(output_dir)
            summary.outputs = export_results(output_dir, formats=formats, dataset=dataset, tracker_name=tracker_name,
                                             sequences=sequences)
        if group is not None:
            dist.barrier(group=group)  # nobody leaves before the merged outputs exist
    finally:
        lock.close()
        if created:
            dist.destroy_process_group()
    return summary


def _prepare(output_dir: Path, sequences: Seq[Sequence], tracker_name: str, dataset: str, split: str | None,
             root: str | Path | None, repeats: int, model: dict[str, Any] | None, backend: str | None
             ) -> tuple[list[tuple[str, int]], list[str]]:
    """Check ``run.json`` against this run and update it; list the (sequence, run) pairs still to do and the records
    dropped because their sequence changed since they were tracked."""
    info = read_run_info(output_dir) or {}
    if info and (info.get("tracker") != tracker_name or info.get("dataset") != dataset
                 or (split is not None and info.get("split") not in (None, split))):
        raise ValueError(f"{output_dir} holds results of tracker {info.get('tracker')!r} on {info.get('dataset')} "
                         f"{info.get('split') or ''}; use another output folder for {tracker_name!r} on {dataset}")
    held = info.get("model")
    if held and model and any(held.get(k) != model.get(k) for k in ("weights", "precision")):
        raise ValueError(f"{output_dir} holds the results of another model ({held.get('name')}: weights "
                         f"{held.get('weights')}, {held.get('precision')}), not of {model.get('name')} (weights "
                         f"{model.get('weights')}, {model.get('precision')}): pick another --output, or another "
                         "--tracker-name with its own --output")
    known = list(info.get("sequences", []))
    known += [s.name for s in sequences if s.name not in set(known)]
    write_run_info(output_dir, {
        "schema_version": SCHEMA_VERSION, "tracker": tracker_name, "dataset": dataset,
        "split": split if split is not None else info.get("split"),
        "root": str(root) if root is not None else info.get("root"),
        "repeats": max(repeats, int(info.get("repeats", 1))), "sequences": known,
        "model": held or model, "backend": backend or info.get("backend"),
    })
    pending, changed = [], []
    for sequence in sorted(sequences, key=lambda s: -len(s)):  # longest first: the last batches stay full
        fingerprint = sequence_fingerprint(sequence)
        for run in range(1, repeats + 1):
            path = record_path(output_dir, sequence.name, run)
            if path.is_file():
                old = load_record(path)
                if old.fingerprint == fingerprint or (old.fingerprint is None and len(old.boxes) == len(sequence)):
                    continue
                changed.append(f"{sequence.name}_{run:03d}")
                path.unlink()  # never reported against the changed sequence, even if re-tracking it fails
            pending.append((sequence.name, run))
    if changed:
        log.warning("%s: re-tracking %d runs whose sequence changed since they were tracked (frames or annotation): "
                    "%s", output_dir, len(changed), ", ".join(changed))
    return pending, changed


def _track_all(tracker: BatchTracker, tasks: list[_Active], output_dir: Path, summary: RunSummary, *, batch_size: int,
               prefetch: int, decode_threads: int, progress: bool, clock: Callable[[], float]) -> None:
    if not tasks:
        return
    from tqdm import tqdm

    total = sum(len(t.sequence) for t in tasks)
    desc = summary.tracker_name if summary.world_size == 1 else f"{summary.tracker_name} [rank {summary.rank}]"
    bar = tqdm(total=total, unit="frame", desc=desc, disable=not progress, dynamic_ncols=True,
               position=summary.rank if summary.world_size > 1 else None, mininterval=0.5)
    queue = deque(tasks)
    lookahead: deque[_Active] = deque()
    active: list[_Active] = []
    with ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode") as pool:
        def submit(item: _Active) -> None:
            while item.next_submit < len(item.sequence) and len(item.frames) < prefetch:
                item.frames.append(pool.submit(read_image, item.sequence.frames[item.next_submit]))
                item.next_submit += 1

        def next_frames(items: list[_Active]) -> tuple[list[_Active], list[np.ndarray]]:
            """The next frame of each item; an item whose frame cannot be read fails alone and is dropped."""
            kept, frames = [], []
            for item in items:
                try:
                    frames.append(item.frames.popleft().result())
                except FrameError as e:
                    name, run = item.sequence.name, item.run
                    log.error("%s run %d failed at frame %d: %s", name, run, item.index, e)
                    save_failure(output_dir, name, run, f"frame {item.index}: {e}")
                    for future in item.frames:
                        future.cancel()
                    if item in active:
                        active.remove(item)
                    bar.update(len(item.sequence) - item.index)
                    continue
                submit(item)
                kept.append(item)
            return kept, frames

        def refill_lookahead() -> None:  # decode the first frames of the sequences that start next
            while queue and len(lookahead) < batch_size:
                item = queue.popleft()
                submit(item)
                lookahead.append(item)

        try:
            refill_lookahead()
            while active or lookahead:
                starting = []
                while len(active) + len(starting) < batch_size and lookahead:
                    starting.append(lookahead.popleft())
                refill_lookahead()
                starting, frames = next_frames(starting)
                if starting:
                    _initialize(tracker, starting, frames, clock, summary)
                    active += starting
                    bar.update(len(starting))
                stepping, frames = next_frames([item for item in active if item.index < len(item.sequence)])
                if stepping:
                    _step(tracker, stepping, frames, clock, summary)
                    bar.update(len(stepping))
                for item in [a for a in active if a.index >= len(a.sequence)]:
                    active.remove(item)
                    save_record(output_dir, Record(item.sequence.name, item.run, item.boxes, item.scores, item.times,
                                                   item.fingerprint))
                    summary.completed.append((item.sequence.name, item.run))
                    bar.set_postfix(seq=f"{len(summary.completed)}/{len(tasks)}", fps=f"{summary.fps:.1f}",
                                    refresh=False)
        finally:
            for item in list(active) + list(lookahead):
                for future in item.frames:
                    future.cancel()
            bar.close()


def _initialize(tracker: BatchTracker, items: list[_Active], frames: list[np.ndarray], clock, summary) -> None:
    boxes = np.stack([np.asarray(item.sequence.boxes[0], dtype=np.float64) for item in items])
    for item, box in zip(items, boxes):
        if not (np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0):
            raise ValueError(f"sequence {item.sequence.name}: the first frame's box {box.tolist()} is not a "
                             "valid initialisation")
    start = clock()
    states = tracker.initialize(frames, boxes)
    elapsed = clock() - start
    if len(states) != len(items):
        raise RuntimeError(f"tracker.initialize returned {len(states)} states for {len(items)} sequences")
    for item, state, box in zip(items, states, boxes):
        n = len(item.sequence)
        item.state = state
        item.boxes, item.scores, item.times = np.zeros((n, 4)), np.zeros(n), np.zeros(n)
        item.boxes[0], item.scores[0], item.times[0] = box, 1.0, elapsed / len(items)
        item.index = 1
    summary.frames += len(items)
    summary.tracker_seconds += elapsed


def _step(tracker: BatchTracker, items: list[_Active], frames: list[np.ndarray], clock, summary) -> None:
    start = clock()
    boxes, scores = tracker.track([item.state for item in items], frames)
    elapsed = clock() - start
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(items) or len(scores) != len(items):
        raise RuntimeError(f"tracker.track returned {len(boxes)} boxes and {len(scores)} scores for "
                           f"{len(items)} sequences")
    for item, box, score in zip(items, boxes, scores):
        if not np.all(np.isfinite(box)):
            raise RuntimeError(f"tracker returned {box.tolist()} on frame {item.index} of "
                               f"{item.sequence.name}")
        item.boxes[item.index], item.scores[item.index] = box, score
        item.times[item.index] = elapsed / len(items)
        item.index += 1
    summary.frames += len(items)
    summary.tracker_seconds += elapsed


def export_results(output_dir: str | Path, *, formats: Seq[str] | None = None, dataset: str | None = None,
                   tracker_name: str | None = None, sequences: Seq[Sequence] | None = None) -> list[Path]:
    """(Re)write the result layouts of an evaluation folder from its records, and the GOT-10k and TrackingNet server
    zips for sequences without ground truth after frame 0 (test splits); returns the folders and zips."""
    output_dir = Path(output_dir)
    info = read_run_info(output_dir) or {}
    dataset = dataset or info.get("dataset") or ""
    tracker_name = safe_name(tracker_name or info.get("tracker") or "tracker")
    records = load_records(output_dir)
    if not records:
        raise FileNotFoundError(f"no result records in {output_dir / 'records'}")
    split = info.get("split")
    formats = list(formats or benchmark(dataset).formats)
    outputs = [write_format(fmt, output_dir, tracker_name, dataset, records, split) for fmt in formats]
    if dataset in ("got10k", "trackingnet") and sequences is not None and \
            all(np.isnan(s.boxes[1:]).all() and s.name in records for s in sequences):
        if dataset not in formats:
            write_format(dataset, output_dir, tracker_name, dataset, records, split)
        runs = max(max(r) for r in records.values())
        if dataset == "got10k":
            folder = output_dir / format_dir("got10k", dataset) / tracker_name
            outputs.append(pack_got10k(folder, output_dir / f"{tracker_name}_got10k.zip"))
        else:
            for run in range(1, runs + 1):
                folder = output_dir / "trackingnet" / run_folder(tracker_name, run, runs)
                suffix = "" if runs == 1 else f"_{run:03d}"
                outputs.append(pack_trackingnet(folder, output_dir / f"{tracker_name}_trackingnet{suffix}.zip"))
    return outputs


def _distributed() -> tuple[int, int, Any, bool]:
    """(rank, world size, gloo group or None, whether we created the process group) from torchrun's env vars."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None, False
    from lorat_plugin.distributed import setup

    global _gloo_group
    created = not dist.is_initialized()
    if created:  # the one torchrun set-up; the tracker's own device is its business
        setup("cpu", timeout_minutes=BARRIER_TIMEOUT.total_seconds() / 60)
    gloo = dist.get_backend() == "gloo"
    if not gloo and _gloo_group is None:  # e.g. NCCL during training: coordinate on the CPU, one group per process
        _gloo_group = dist.new_group(backend="gloo", timeout=BARRIER_TIMEOUT)
    return dist.get_rank(), dist.get_world_size(), dist.group.WORLD if gloo else _gloo_group, created


def _agree(rank: int, group: Any, compute: Callable[[], Any]) -> Any:
    """Rank 0 computes, every rank gets the value (or rank 0's error)."""
    if group is None:
        return compute()
    payload: list[Any] = [None]
    error = None
    if rank == 0:
        try:
            payload = [("ok", compute())]
        except Exception as e:  # noqa: BLE001 - handed to every rank, then raised everywhere
            error = e
            payload = [("error", f"{type(e).__name__}: {e}")]
    dist.broadcast_object_list(payload, src=0, group=group)
    status, value = payload[0]
    if error is not None:
        raise error
    if status == "error":
        raise RuntimeError(f"rank 0 could not prepare the run: {value}")
    return value
