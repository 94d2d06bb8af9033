"""Run a batch tracker over benchmark sequences: batched, prefetched, resumable, shardable with torchrun.

A *batch tracker* has ``initialize(frames, boxes) -> states`` and ``track(states, frames) -> (boxes, scores)``.
``batch_size`` sequences are in flight; each tracker call advances each of them by one frame and a finished
sequence's slot goes to the next one at once (``_Scheduler``). Frames are decoded ahead in a thread pool. Each frame
records the whole wall time of the call that produced it, the number of sequences in that call and whether the call
was a warm-up (records.py), so that the speed is frames per second per sequence, whatever the batch.

A record is written atomically when its sequence is complete; a new call skips the records tracked on the same
sequence (same fingerprint). A sequence whose frame cannot be read fails alone (its error is kept beside the
records and the next call retries it). One run at a time holds a folder (``records.exclusive``). Under ``torchrun``
every rank takes a disjoint share of the pending sequences (gloo on CPU coordinates them), rank 0 writes the
result layouts after a barrier, the same files as a one-process run's, and its summary counts every rank's work.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence as Seq
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch.distributed as dist

from lorat_plugin.data.sequence import FrameError, Sequence, read_image
from lorat_plugin.distributed import peer_failures, sigkill_hook
from lorat_plugin.environment import run_environment

from .benchmarks import benchmark
from .formats import format_dir, pack_got10k, pack_trackingnet, run_folder, safe_name, write_format
from .records import (SCHEMA_VERSION, Record, Speed, exclusive, load_failures, load_record, load_records,
                      read_run_info, record_path, save_failure, save_record, sequence_fingerprint, speed_of,
                      write_run_info)

log = logging.getLogger(__name__)
# Ranks that finish their share early wait for the slowest one at the final gathering, for as long as it takes: a
# shorter timeout would fail healthy runs with unequal shares. A rank that dies does not make the others wait that
# long: torchrun stops the group when one of its workers exits, and gloo fails a collective with a dead peer at once
# (distributed.peer_failures names it). The timeout is only for a peer that hangs with its connection open.
BARRIER_TIMEOUT = timedelta(days=7)
_gloo_group: Any = None


class BatchTracker(Protocol):
    def initialize(self, frames: list[np.ndarray], boxes: np.ndarray) -> list[Any]: ...

    def track(self, states: list[Any], frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class RunOptions:
    """How :func:`run_benchmark` runs. ``dataset`` (default: the sequences' ``dataset``) picks the box convention
    and the default layouts (``evaluation.benchmarks``); ``split`` and ``root`` are only recorded in ``run.json`` for
    ``lorat report``. ``model`` is the model's identity (``ModelSpec.identity``) and ``backend`` what ran it; a folder
    holding another model's results (other weights or precision) is refused. ``timed=False`` marks a tracker whose
    time is not a model's (e.g. a static box): reports show no speed for it. ``clock`` times the tracker calls."""

    tracker_name: str
    dataset: str | None = None
    split: str | None = None
    root: str | Path | None = None
    repeats: int = 1
    batch_size: int | None = None  # None: the tracker's preferred_batch_size (the engine: 1 on the CPU), else 8
    formats: Seq[str] | None = None
    prefetch: int = 3          # frames decoded ahead per sequence
    decode_threads: int = 4
    progress: bool = True
    model: dict[str, Any] | None = None
    backend: str | None = None
    timed: bool = True
    clock: Callable[[], float] = time.perf_counter

    def check(self, sequences: Seq[Sequence]) -> None:
        if (self.batch_size is not None and self.batch_size < 1) or self.repeats < 1 or self.prefetch < 1 \
                or self.decode_threads < 1:
            raise ValueError("batch_size, repeats, prefetch and decode_threads must be >= 1")
        if not sequences:
            raise ValueError("no sequences to evaluate")
        if len({s.name for s in sequences}) != len(sequences):
            raise ValueError("sequence names must be unique within a benchmark")


@dataclass
class RunSummary:
    output_dir: Path
    tracker_name: str
    completed: list[tuple[str, int]] = field(default_factory=list)  # (sequence, run) tracked: every rank's on rank 0
    completed_here: list[tuple[str, int]] = field(default_factory=list)  # ... by this process
    skipped: int = 0                    # (sequence, run) pairs already done before this call
    frames: int = 0                     # frames tracked (every rank's on rank 0)
    tracker_seconds: float = 0.0        # time inside the tracker's calls, each call once (every rank's on rank 0)
    rank: int = 0
    world_size: int = 1
    outputs: list[Path] = field(default_factory=list)  # layouts and zips written (rank 0)
    retracked: list[str] = field(default_factory=list)  # records replaced: their sequence changed (rank 0)
    failures: dict[str, str] = field(default_factory=dict)  # "<sequence>_<run>" -> error, every rank's (rank 0)
    speed: Speed | None = None          # of the records this call tracked, every rank's (rank 0; None: none)
    environments: list[dict[str, Any]] = field(default_factory=list)  # how each rank ran, distinct ones

    @property
    def fps(self) -> float | None:
        """Frames per second per sequence (:class:`Speed`), the figure ``lorat report`` shows for the same run."""
        return self.speed.fps if self.speed is not None else None


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
    warmup: np.ndarray | None = None
    batch: np.ndarray | None = None


@dataclass
class _Plan:
    """What rank 0 decided for every rank: the pairs to track, the records dropped, each rank's environment index."""

    pending: list[tuple[str, int]]
    retracked: list[str]
    environment_of_rank: list[int]


def run_benchmark(tracker: BatchTracker, sequences: Seq[Sequence], output_dir: str | Path,
                  options: RunOptions | None = None, **settings: Any) -> RunSummary:
    """Track every sequence ``repeats`` times and write records, then the result layouts of ``formats``.

    The options are a :class:`RunOptions` or its fields as keywords (``tracker_name=...``, ``batch_size=...``);
    keywords given beside ``options`` replace its fields.
    """
    if options is None:
        options = RunOptions(**settings)
    elif settings:
        options = replace(options, **settings)
    options.check(sequences)
    if options.batch_size is None:
        options = replace(options, batch_size=int(getattr(tracker, "preferred_batch_size", 8)))
    if not getattr(tracker, "timed", True):  # the tracker says its time is not a model's
        options = replace(options, timed=False)
    output_dir = Path(output_dir)
    dataset = benchmark(options.dataset or sequences[0].dataset).key  # an unknown benchmark fails before tracking
    tracker_name = safe_name(options.tracker_name)
    rank, world, group, created = _distributed()
    summary = RunSummary(output_dir, tracker_name, rank=rank, world_size=world)
    with peer_failures("evaluation", "the records written so far are kept: rerun the same command to track the rest"):
        lock = ExitStack()
        try:
            environment = run_environment(getattr(tracker, "device", None), batch_size=options.batch_size,
                                          world_size=world)
            every_rank = _all_gather(group, environment)

            def prepare() -> _Plan:
                lock.enter_context(exclusive(output_dir))  # rank 0 holds it for the whole torchrun run
                return _prepare(output_dir, sequences, tracker_name, dataset, options, every_rank)

            plan = _agree(rank, group, prepare)
            summary.retracked = plan.retracked
            summary.skipped = len(sequences) * options.repeats - len(plan.pending)
            by_name = {s.name: s for s in sequences}
            mine = [_Active(by_name[name], run, sequence_fingerprint(by_name[name]))
                    for name, run in plan.pending[rank::world]]
            _Scheduler(tracker, mine, output_dir, summary, options, plan.environment_of_rank[rank]).run()
            _count_every_rank(summary, group)  # a collective: past it, every rank's records are on disk
            summary.environments = [e for i, e in enumerate(every_rank) if e not in every_rank[:i]]
            if rank == 0:
                summary.failures = load_failures(output_dir)
                if summary.completed:
                    summary.speed = speed_of(load_record(record_path(output_dir, name, run))
                                             for name, run in summary.completed)
                summary.outputs = export_results(output_dir, formats=options.formats, dataset=dataset,
                                                 tracker_name=tracker_name, sequences=sequences)
            if group is not None:
                dist.barrier(group=group)  # nobody leaves before the merged outputs exist
        finally:
            lock.close()
            if created:
                dist.destroy_process_group()
    return summary


def _prepare(output_dir: Path, sequences: Seq[Sequence], tracker_name: str, dataset: str, options: RunOptions,
             every_rank: list[dict[str, Any]]) -> _Plan:
    """Check ``run.json`` against this run and update it; list the (sequence, run) pairs still to do and the records
    dropped because their sequence changed since they were tracked."""
    info = read_run_info(output_dir) or {}
    split, model = options.split, options.model
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
    environments = list(info.get("environments", []))  # how the folder's records were tracked, in order
    for environment in every_rank:
        if environment not in environments:
            environments.append(environment)
    write_run_info(output_dir, {
        "schema_version": SCHEMA_VERSION, "tracker": tracker_name, "dataset": dataset,
        "split": split if split is not None else info.get("split"),
        "root": str(options.root) if options.root is not None else info.get("root"),
        "repeats": max(options.repeats, int(info.get("repeats", 1))), "sequences": known,
        "model": held or model, "backend": options.backend or info.get("backend"), "timed": options.timed,
        "environments": environments,
    })
    pending, changed = [], []
    for sequence in sorted(sequences, key=lambda s: -len(s)):  # longest first: the last batches stay full
        fingerprint = sequence_fingerprint(sequence)
        for run in range(1, options.repeats + 1):
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
    return _Plan(pending, changed, [environments.index(e) for e in every_rank])


class _Scheduler:
    """Keeps ``batch_size`` sequences in flight in one process: each tracker call advances every active sequence by
    one frame; a finished sequence is saved and the next one starts in its slot at once, its first frames already
    decoded (a look-ahead of up to ``batch_size`` sequences); a sequence whose frame cannot be read fails alone.

    Every frame gets the whole time of the call that produced it, the number of sequences in that call, and a
    warm-up mark: initialisations, and the first call with each number of sequences (a new shape for the network).
    """

    def __init__(self, tracker: BatchTracker, tasks: list[_Active], output_dir: Path, summary: RunSummary,
                 options: RunOptions, environment: int) -> None:
        self.tracker = tracker
        self.output_dir = output_dir
        self.summary = summary
        self.options = options
        self.environment = environment
        self.total = len(tasks)
        self.queue = deque(tasks)
        self.lookahead: deque[_Active] = deque()
        self.active: list[_Active] = []
        self.shapes_seen: set[int] = set()   # numbers of sequences that track() has been called with
        self.steady_frames = 0               # for the progress bar: frames outside warm-up ...
        self.steady_seconds = 0.0            # ... and their undivided time
        self.pool: ThreadPoolExecutor | None = None
        self.bar: Any = None

    def run(self) -> None:
        if not self.queue:
            return
        from tqdm import tqdm

        summary = self.summary
        sharded = summary.world_size > 1
        self.bar = tqdm(total=sum(len(t.sequence) for t in self.queue), unit="frame",
                        desc=f"{summary.tracker_name} [rank {summary.rank}]" if sharded else summary.tracker_name,
                        disable=not self.options.progress, dynamic_ncols=True,
                        position=summary.rank if sharded else None, mininterval=0.5)
        with ThreadPoolExecutor(max_workers=self.options.decode_threads, thread_name_prefix="decode") as pool:
            self.pool = pool
            try:
                self._refill_lookahead()
                while self.active or self.lookahead:
                    self._start_waiting_sequences()
                    self._advance_active_sequences()
                    self._save_finished_sequences()
            finally:
                for item in self.active + list(self.lookahead):
                    for future in item.frames:
                        future.cancel()
                self.bar.close()

    def _submit(self, item: _Active) -> None:
        while item.next_submit < len(item.sequence) and len(item.frames) < self.options.prefetch:
            item.frames.append(self.pool.submit(read_image, item.sequence.frames[item.next_submit]))
            item.next_submit += 1

    def _refill_lookahead(self) -> None:  # decode the first frames of the sequences that start next
        while self.queue and len(self.lookahead) < self.options.batch_size:
            item = self.queue.popleft()
            self._submit(item)
            self.lookahead.append(item)

    def _next_frames(self, items: list[_Active]) -> tuple[list[_Active], list[np.ndarray]]:
        """The next frame of each item; an item whose frame cannot be read fails alone and is dropped."""
        kept, frames = [], []
        for item in items:
            try:
                frames.append(item.frames.popleft().result())
            except FrameError as e:
                name, run = item.sequence.name, item.run
                log.error("%s run %d failed at frame %d: %s", name, run, item.index, e)
                save_failure(self.output_dir, name, run, f"frame {item.index}: {e}")
                for future in item.frames:
                    future.cancel()
                if item in self.active:
                    self.active.remove(item)
                self.bar.update(len(item.sequence) - item.index)
                continue
            self._submit(item)
            kept.append(item)
        return kept, frames

    def _start_waiting_sequences(self) -> None:
        starting = []
        while len(self.active) + len(starting) < self.options.batch_size and self.lookahead:
            starting.append(self.lookahead.popleft())
        self._refill_lookahead()
        starting, frames = self._next_frames(starting)
        if starting:
            self._initialize(starting, frames)
            self.active += starting
            self.bar.update(len(starting))

    def _advance_active_sequences(self) -> None:
        stepping, frames = self._next_frames([item for item in self.active if item.index < len(item.sequence)])
        if stepping:
            self._step(stepping, frames)
            self.bar.update(len(stepping))

    def _save_finished_sequences(self) -> None:
        summary = self.summary
        for item in [a for a in self.active if a.index >= len(a.sequence)]:
            self.active.remove(item)
            save_record(self.output_dir, Record(item.sequence.name, item.run, item.boxes, item.scores, item.times,
                                                item.fingerprint, item.warmup, item.batch, self.environment))
            summary.completed_here.append((item.sequence.name, item.run))
            sigkill_hook("record")
            fps = self.steady_frames / self.steady_seconds if self.steady_seconds > 0 else float("nan")
            self.bar.set_postfix(seq=f"{len(summary.completed_here)}/{self.total}", fps_per_seq=f"{fps:.1f}",
                                 refresh=False)

    def _timed(self, call: Callable[[], Any]) -> tuple[Any, float]:
        clock = self.options.clock
        start = clock()
        value = call()
        return value, clock() - start

    def _initialize(self, items: list[_Active], frames: list[np.ndarray]) -> None:
        boxes = np.stack([np.asarray(item.sequence.boxes[0], dtype=np.float64) for item in items])
        for item, box in zip(items, boxes):
            if not (np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0):
                raise ValueError(f"sequence {item.sequence.name}: the first frame's box {box.tolist()} is not a "
                                 "valid initialisation")
        states, elapsed = self._timed(lambda: self.tracker.initialize(frames, boxes))
        if len(states) != len(items):
            raise RuntimeError(f"tracker.initialize returned {len(states)} states for {len(items)} sequences")
        for item, state, box in zip(items, states, boxes):
            n = len(item.sequence)
            item.state = state
            item.boxes, item.scores, item.times = np.zeros((n, 4)), np.zeros(n), np.zeros(n)
            item.warmup, item.batch = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
            item.boxes[0], item.scores[0] = box, 1.0
            item.times[0], item.warmup[0], item.batch[0] = elapsed, True, len(items)
            item.index = 1
        self.summary.frames += len(items)
        self.summary.tracker_seconds += elapsed

    def _step(self, items: list[_Active], frames: list[np.ndarray]) -> None:
        (boxes, scores), elapsed = self._timed(lambda: self.tracker.track([item.state for item in items], frames))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(boxes) != len(items) or len(scores) != len(items):
            raise RuntimeError(f"tracker.track returned {len(boxes)} boxes and {len(scores)} scores for "
                               f"{len(items)} sequences")
        warmup = len(items) not in self.shapes_seen
        self.shapes_seen.add(len(items))
        for item, box, score in zip(items, boxes, scores):
            if not np.all(np.isfinite(box)):
                raise RuntimeError(f"tracker returned {box.tolist()} on frame {item.index} of "
                                   f"{item.sequence.name}")
            i = item.index
            item.boxes[i], item.scores[i] = box, score
            item.times[i], item.warmup[i], item.batch[i] = elapsed, warmup, len(items)
            item.index += 1
        self.summary.frames += len(items)
        self.summary.tracker_seconds += elapsed
        if not warmup:
            self.steady_frames += len(items)
            self.steady_seconds += elapsed * len(items)


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


def _all_gather(group: Any, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (``[value]`` in one process)."""
    if group is None:
        return [value]
    values: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(values, value, group=group)
    return values


def _count_every_rank(summary: RunSummary, group: Any) -> None:
    """Rank 0's summary counts every rank's sequences, frames and tracker time; the others keep their own."""
    mine = (summary.completed_here, summary.frames, summary.tracker_seconds)
    every_rank = _all_gather(group, mine)
    if summary.rank == 0:
        summary.completed = [tuple(pair) for completed, _, _ in every_rank for pair in completed]
        summary.frames = sum(frames for _, frames, _ in every_rank)
        summary.tracker_seconds = sum(seconds for _, _, seconds in every_rank)
    else:
        summary.completed = list(summary.completed_here)
