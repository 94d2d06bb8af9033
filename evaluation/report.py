"""Official metrics of one benchmark for one or more trackers: ``metrics.json``, a printed table, plots.

Results are read as the official tools read them: from an evaluation folder (``lorat evaluate``'s output: its
records, formatted exactly as its result files are) or from any folder in one of the layouts of formats.py (other
trackers' published raw results). Ground truth comes from the benchmark's reader.
"""
from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any

import numpy as np

from lorat_plugin.data.annotations import format_table
from lorat_plugin.data.datasets.names import printable
from lorat_plugin.data.sequence import Sequence
from lorat_plugin.environment import format_environment
from lorat_plugin.files import atomic_write_text

from . import metrics as M
from .benchmarks import Benchmark, benchmark
from .formats import TrackerResults, merge_runs, native_boxes, pytracking_name, read_layout
from .records import (DIVIDED, PER_SEQUENCE, TIME_FILES, Record, load_records, read_run_info, record_path,
                      sequence_fingerprint, speed_of, speed_of_times)

PROTOCOLS = {
    "got10k": "GOT-10k: got10k toolkit ExperimentGOT10k.report / GOT-10k server (frame 0 excluded, cover > 0, "
              "IoU clipped to the image, frames of all sequences and runs pooled)",
    "ope": "OPE as pytracking extract_results computes it (the LoRAT paper's convention): 21 thresholds with '>', "
           "AUC = mean of the curve, P at 20 px, P_norm at 0.20, per-sequence curves averaged; 'lasot_toolkit': "
           "the LaSOT MATLAB toolkit; 'got10k_otb': got10k ExperimentOTB/UAV123/NfS",
    "trackingnet": "TrackingNet devkit metrics.py / server: integer-rounded boxes, 21-point curves, trapezoid areas",
}


def evaluated_sequences(sequences: list[Sequence], info: dict[str, Any] | None, dataset: str) -> list[Sequence]:
    """``sequences`` (a benchmark split) narrowed to those an evaluation of a subset tracked (``lorat evaluate
    --sequence-names``: run.json ``info`` lists them); all of them for a whole split or another benchmark's folder."""
    if info and info.get("sequences") and info.get("dataset") == dataset:
        evaluated = set(info["sequences"])
        return [s for s in sequences if s.name in evaluated]
    return sequences


def load_results(path: str | Path, dataset: str, sequences: list[Sequence], *, name: str | None = None,
                 records: dict[str, dict[int, Record]] | None = None) -> TrackerResults:
    """One tracker's results on ``sequences``: an evaluation folder (with ``run.json``) or a layout folder.
    ``records``: an evaluation folder's :func:`load_records`, where the caller has read them already."""
    path = Path(path)
    info = read_run_info(path)
    names = [s.name for s in sequences]
    if info is None:
        if not path.is_dir() or _has_results(path, names[0], dataset):
            return read_layout(path, sequences, dataset, name=name)
        # a folder holding one tracker's folder, or the run folders of one tracker (<tracker>_001[_tracking_result])
        inner = sorted(p for p in path.iterdir() if p.is_dir() and _has_results(p, names[0], dataset))
        runs = [_RUN_FOLDER.fullmatch(p.name) for p in inner]
        if len(inner) > 1 and all(runs) and len({m.group(1) for m in runs}) == 1:
            return merge_runs([read_layout(p, sequences, dataset) for p in inner], name or runs[0].group(1))
        if len(inner) > 1:
            raise ValueError(f"{path} holds results of several trackers ({', '.join(p.name for p in inner)}): "
                             "pass their folders one by one")
        return read_layout(inner[0] if inner else path, sequences, dataset, name=name)
    if info.get("dataset") not in (None, "", dataset):
        raise ValueError(f"{path} holds {info['dataset']} results, not {dataset}")
    records = load_records(path) if records is None else records
    missing = [n for n in names if n not in records]
    if missing:
        raise FileNotFoundError(f"{path}: no results for {len(missing)} of {len(names)} sequences, e.g. {missing[0]}"
                                " (run `lorat evaluate` again to finish them)")
    runs, times = {}, {}
    for sequence in sequences:
        by_run = records[sequence.name]
        for run, record in by_run.items():
            if len(record.boxes) != len(sequence):
                problem = f"{len(record.boxes)} result boxes for {len(sequence)} frames of {sequence.name}"
            elif record.fingerprint not in (None, sequence_fingerprint(sequence)):
                problem = f"tracked on another version of {sequence.name} (its frames or annotation changed since)"
            else:
                continue
            raise ValueError(f"{record_path(path, sequence.name, run)}: {problem}; run `lorat evaluate` on this "
                             "benchmark again to re-track it")
        # the values the official tool reads: our result files are written with 3 decimals
        runs[sequence.name] = [_as_written(native_boxes(by_run[r].boxes, dataset), "%.3f") for r in sorted(by_run)]
        times[sequence.name] = _as_written(np.stack([by_run[r].times for r in sorted(by_run)], axis=1), "%.8f")
    model = {**(info.get("model") or {}), **({"backend": info["backend"]} if info.get("backend") else {})}
    scored = [record for s in sequences for record in records[s.name].values()]
    known = info.get("environments") or []
    used = sorted({r.environment for r in scored if r.environment is not None and r.environment < len(known)})
    how_it_ran = {"speed": speed_of(scored).as_dict(), "timed": bool(info.get("timed", True)),
                  "environments": [known[i] for i in used]}
    return TrackerResults(name or info.get("tracker") or path.name, runs, times, str(path), model, how_it_ran)


_RUN_FOLDER = re.compile(r"(.+)_\d{3}(?:_tracking_result)?")


def _as_written(values: np.ndarray, fmt: str) -> np.ndarray:
    return np.loadtxt(io.StringIO(format_table(values, fmt, ",")), delimiter=",", ndmin=2)


def _has_results(folder: Path, sequence: str, dataset: str) -> bool:
    return any(p.is_file() for p in (folder / f"{sequence}.txt", folder / f"{pytracking_name(sequence, dataset)}.txt",
                                     folder / sequence / f"{sequence}_001.txt"))


def evaluate(dataset: str, sequences: list[Sequence], trackers: list[TrackerResults], *,
             split: str | None = None) -> dict[str, Any]:
    """The metrics.json content: the benchmark's official metrics for every tracker."""
    info = benchmark(dataset)
    if not sequences:
        raise ValueError("no sequences")
    if all(np.isnan(s.boxes[1:]).all() for s in sequences if len(s) > 1):
        raise ValueError(f"{info.title} {split or ''}: the ground truth is withheld (only frame 0 is annotated); "
                         "submit the server zip (`lorat pack`) to get its metrics")
    out: dict[str, Any] = {"dataset": dataset, "title": info.title, "split": split, "sequences": len(sequences),
                           "protocol": PROTOCOLS[info.protocol], "trackers": {}}
    for tracker in trackers:
        # two folders of one tracker (e.g. two checkpoints) must stay apart
        candidates = itertools.chain([tracker.name], (f"{tracker.name} ({k})" for k in itertools.count(2)))
        name = next(n for n in candidates if n not in out["trackers"])
        entry: dict[str, Any] = {"source": tracker.source, "runs": max(len(r) for r in tracker.runs.values()),
                                 **_speed(tracker, sequences)}
        if tracker.model:
            entry["model"] = tracker.model
        if tracker.how_it_ran.get("environments"):
            entry["environments"] = tracker.how_it_ran["environments"]
        if info.protocol == "got10k":
            entry["got10k"] = _got10k(sequences, tracker)
            # the OPE scores beside (AUC, precision at 20 px, ...): on a fully annotated split every frame scores;
            # and per challenge where the sequences name theirs (the procedural benchmark)
            ope = _ope(sequences, tracker, info)
            entry["ope"] = ope["ope"]
            if "attributes" in ope:
                entry["attributes"] = ope["attributes"]
        elif info.protocol == "trackingnet":
            entry["trackingnet"] = _trackingnet(sequences, tracker, dataset)
        else:
            entry.update(_ope(sequences, tracker, info))
        out["trackers"][name] = entry
    return out


def _speed(tracker: TrackerResults, sequences: list[Sequence]) -> dict[str, Any]:
    """``fps`` (the headline, None where there is none) and ``speed``: an evaluation folder's from its records,
    other results' from their time files (docs/evaluation.md, "Speed")."""
    speed = tracker.how_it_ran.get("speed")
    if speed is None:
        speed = speed_of_times(tracker.times[s.name] for s in sequences if s.name in tracker.times).as_dict()
    timed = tracker.how_it_ran.get("timed", True)
    return {"fps": speed["fps"] if timed else None, "speed": {**speed, "timed": timed}}


def _got10k(sequences: list[Sequence], tracker: TrackerResults) -> dict:
    from PIL import Image

    per_sequence = {}
    for s in sequences:
        cover = s.attributes.get("cover", s.visible.astype(int))  # no cover.label: visible frames count
        resolution = s.attributes.get("resolution")
        if resolution is None:
            with Image.open(s.frames[0]) as image:  # reads the header only
                resolution = image.size
        per_sequence[s.name] = M.got10k_sequence(tracker.runs[s.name], native_boxes(s.boxes, "got10k"), cover,
                                                 resolution, tracker.times.get(s.name))
    return M.got10k_benchmark(per_sequence)


def _target_visible(sequence: Sequence) -> np.ndarray:
    hidden = [np.asarray(sequence.attributes[k], dtype=bool) for k in ("full_occlusion", "out_of_view")
              if k in sequence.attributes]
    return ~np.logical_or.reduce(hidden) if hidden else np.asarray(sequence.visible, dtype=bool)


def _mean_curves(per_run: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Repeated runs of one sequence averaged curve by curve."""
    return tuple(np.mean(curves, axis=0) for curves in zip(*per_run))


def _ope(sequences: list[Sequence], tracker: TrackerResults, info: Benchmark) -> dict:
    per_sequence: dict[str, M.OPECurves] = {}
    per_run: dict[int, dict[str, M.OPECurves]] = {}
    for s in sequences:
        gt = native_boxes(s.boxes, info.key)
        visible = _target_visible(s) if info.ope_kind == "lasot" else None
        curves = [M.ope_sequence(boxes, gt, kind=info.ope_kind, target_visible=visible,
                                 name=f"{tracker.name}/{s.name}") for boxes in tracker.runs[s.name]]
        for run, c in enumerate(curves, start=1):
            per_run.setdefault(run, {})[s.name] = c
        per_sequence[s.name] = M.OPECurves.mean(curves)  # repeated runs are averaged curve by curve
    overall = M.OPECurves.mean(list(per_sequence.values()))
    result: dict[str, Any] = {"ope": {**overall.scores(), "success_curve": overall.success.tolist(),
                                      "precision_curve": overall.precision.tolist(),
                                      "norm_precision_curve": overall.norm_precision.tolist()},
                              "sequences": {name: c.scores() for name, c in per_sequence.items()}}
    complete_runs = [run for run, by_seq in sorted(per_run.items()) if len(by_seq) == len(sequences)]
    if len(complete_runs) > 1:
        result["per_run"] = [M.OPECurves.mean(list(per_run[r].values())).scores() for r in complete_runs]
    attributes = _attribute_breakdown(sequences, per_sequence)
    if attributes:
        result["attributes"] = attributes
    if info.also_lasot_toolkit:
        curves = {}
        for s in sequences:
            gt, absent = native_boxes(s.boxes, info.key), ~_target_visible(s)
            curves[s.name] = _mean_curves([M.lasot_toolkit_sequence(b, gt, absent) for b in tracker.runs[s.name]])
        result["lasot_toolkit"] = M.lasot_toolkit_benchmark(curves)
    if info.also_got10k_otb:
        curves, speeds = {}, {}
        for s in sequences:  # ExperimentOTB reads one result file per sequence: the first run
            curves[s.name] = M.got10k_otb_sequence(tracker.runs[s.name][0], native_boxes(s.boxes, info.key),
                                                   drop_nan_gt=info.key == "uav123")
            speeds[s.name] = M.got10k_otb_speed(tracker.times.get(s.name))
        result["got10k_otb"] = M.got10k_otb_benchmark(curves, speeds)
    return result


def _attribute_breakdown(sequences: list[Sequence], curves: dict[str, M.OPECurves]) -> dict:
    breakdown = {}
    for key in dict.fromkeys(key for s in sequences for key in s.attributes.get("challenges", {})):
        members = [s.name for s in sequences if s.attributes.get("challenges", {}).get(key)]
        if members:
            mean = M.OPECurves.mean([curves[n] for n in members])
            breakdown[key] = {"sequences": len(members), **mean.scores(), "success_curve": mean.success.tolist()}
    return breakdown


def _trackingnet(sequences: list[Sequence], tracker: TrackerResults, dataset: str) -> dict:
    curves = {s.name: _mean_curves([M.trackingnet_sequence(boxes, native_boxes(s.boxes, dataset))
                                    for boxes in tracker.runs[s.name]]) for s in sequences}
    result = M.trackingnet_benchmark(curves)
    result["sequences"] = {name: {"auc": M.trapezoid(success), "precision": M.trapezoid(precision),
                                  "norm_precision": M.trapezoid(norm_precision)}
                           for name, (success, precision, norm_precision) in curves.items()}
    return result


# the speed columns of headline(), by what they are (docs/evaluation.md, "Speed")
SPEED_COLUMNS = {"per_sequence": "FPS", "batch": "batch", "throughput": "throughput", "got10k": "speed_fps"}
SPEED_DECIMALS = {"FPS": 1, "batch": 0, "throughput": 1, "speed_fps": 1}
NO_MODEL = "no model"  # the speed cell of a tracker whose time is not a model's
OLDER = "(old)"        # after the speed of records whose times were divided by the sequences per call
SPEED_NOTES = {
    "FPS": "FPS: frames per second per sequence: the frames after the first over the time of the tracker calls that "
           "advanced the sequence, each call counted whole (not divided by the sequences in it); warm-up calls "
           "(initialisations, the first call with each number of sequences) left out",
    "throughput": "throughput: all sequences' frames over the tracker's time at the batch shown, in one process "
                  "(decoding not counted)",
    "speed_fps": "speed_fps: the got10k toolkit's figure, the mean of per-frame 1/t over every frame (the fastest "
                 "frames dominate it)",
}


def headline(entry: dict) -> dict[str, float | str | None]:
    """The columns papers report, as percentages; then the speed: ``FPS`` (per sequence), the ``throughput`` at
    ``batch`` sequences per call, and for GOT-10k the got10k toolkit's ``speed_fps`` beside them (``SPEED_NOTES``)."""
    if "got10k" in entry:
        o = entry["got10k"]["overall"]
        row = {"AO": o["ao"], "SR0.5": o["sr50"], "SR0.75": o["sr75"]}
        if "ope" in entry:  # results evaluated before the OPE columns were added have none
            row.update({"AUC": entry["ope"]["auc"], "P_norm": entry["ope"]["norm_precision"],
                        "P": entry["ope"]["precision"]})
    elif "trackingnet" in entry:
        t = entry["trackingnet"]
        row = {"AUC": t["success"], "P_norm": t["norm_precision"], "P": t["precision"]}
    else:
        o = entry["ope"]
        row = {"AUC": o["auc"], "P_norm": o["norm_precision"], "P": o["precision"], "SR0.5": o["sr50"],
               "SR0.75": o["sr75"]}
        if "lasot_toolkit" in entry:
            t = entry["lasot_toolkit"]
            row.update({"toolkit AUC": t["auc"], "toolkit P_n": t["norm_precision"], "toolkit P": t["precision"]})
        if "got10k_otb" in entry:
            row["got10k AUC"] = entry["got10k_otb"]["success_score"]
            row["got10k P@20"] = entry["got10k_otb"]["precision_score"]
    row = {k: None if v is None else 100.0 * v for k, v in row.items()}
    return {**row, **speed_columns(entry)}


def speed_columns(entry: dict) -> dict[str, float | str | None]:
    """``FPS``, ``batch``, ``throughput`` (and ``speed_fps`` for GOT-10k) of one tracker's metrics entry."""
    speed = entry.get("speed") or {}
    timed = speed.get("timed", True)
    fps: float | str | None = speed.get("fps")
    if not timed:
        fps = NO_MODEL
    elif fps is not None and speed.get("convention") == DIVIDED:
        fps = f"{fps:.1f} {OLDER}"
    columns = {"FPS": fps, "batch": (speed.get("batch") or None) if timed else None,
               "throughput": speed.get("throughput") if timed else None}
    if "got10k" in entry:
        speed_fps = entry["got10k"]["overall"]["speed_fps"]
        columns["speed_fps"] = speed_fps if speed_fps > 0 and timed else None  # the toolkit's -1: no times
    return columns


def speed_notes(trackers: dict[str, dict]) -> list[str]:
    """What the speed columns mean, then per tracker: warm-up left out, older or foreign conventions, no model."""
    columns = {c for entry in trackers.values() for c, v in speed_columns(entry).items() if v is not None}
    lines = [note for column, note in SPEED_NOTES.items() if column in columns]
    for name, entry in trackers.items():
        speed = entry.get("speed") or {}
        if not speed.get("timed", True):
            lines.append(f"{name}: {NO_MODEL}: its time is the harness's, not a tracker's speed")
        elif speed.get("convention") == DIVIDED and speed.get("fps") is not None:
            lines.append(f"{name}: {OLDER} records before schema 3, whose times were divided by the sequences per call "
                         "(a throughput, not per sequence); `lorat evaluate` into a new folder gives the FPS")
        elif speed.get("convention") == TIME_FILES and speed.get("fps") is not None:
            lines.append(f"{name}: FPS from its time files (frames after the first over their times)")
        elif speed.get("convention") == PER_SEQUENCE and speed.get("warmup_frames"):
            lines.append(f"{name}: warm-up left out: {speed['warmup_frames']} frames, "
                         f"{speed['warmup_seconds']:.2f} s of tracker calls")
        if speed.get("older_records"):
            lines.append(f"{name}: {speed['older_records']} records before schema 3 left out of its speed")
    return lines


def environment_notes(trackers: dict[str, dict]) -> list[str]:
    """How each evaluation folder's records were tracked (run.json's environments), one line each."""
    return [f"{name} ran on: {format_environment(environment)}" for name, entry in trackers.items()
            for environment in entry.get("environments", [])]


def render_table(rows: dict[str, dict[str, Any]], *, header: Seq[str] = (), footer: Seq[str] = (),
                 first: str = "tracker", decimals: int = 2, column_decimals: dict[str, int] | None = None) -> str:
    """Rows of numbers under named columns, right-aligned, ``-`` for a missing value; ``header`` and ``footer``
    lines around them. The one table renderer of reports, the per-sequence view and the demo."""
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    places = {c: (column_decimals or {}).get(c, decimals) for c in columns}
    # names come from data (folders, list files): printed with control characters escaped, one line each
    cells = {printable(name): [printable(_text(row.get(c), places[c])) for c in columns] for name, row in rows.items()}
    titles = [printable(c) for c in columns]
    width = max(len(first), *(len(n) for n in cells))
    widths = [max(len(c), *(len(v[i]) for v in cells.values())) for i, c in enumerate(titles)]
    lines = [*map(printable, header), f"{first:<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(titles, widths))]
    lines += [f"{name:<{width}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(values, widths))
              for name, values in cells.items()]
    return "\n".join([*lines, *map(printable, footer)])


def _text(value: float | str | None, decimals: int) -> str:
    """A table cell: a number with ``decimals``, a note as it is, ``-`` for none."""
    if isinstance(value, str):
        return value
    return "-" if value is None or not np.isfinite(value) else f"{value:.{decimals}f}"


def table(result: dict) -> str:
    """The printed table: one row per tracker, the model and precision of each evaluation folder, then (LaSOT) the
    AUC per challenge attribute."""
    trackers = result["trackers"]
    title = f"{result['title']}{' ' + result['split'] if result.get('split') else ''} ({result['sequences']} sequences)"
    models = [f"{name}: {describe_model(entry['model'])}" for name, entry in trackers.items() if entry.get("model")]
    text = render_table({name: headline(entry) for name, entry in trackers.items()}, header=[title],
                        footer=[*models, *speed_notes(trackers), *environment_notes(trackers)],
                        column_decimals=SPEED_DECIMALS)
    counts = next(iter(trackers.values())).get("attributes", {})
    if counts:
        rows = {name: {f"{a}({n['sequences']})": 100 * entry["attributes"][a]["auc"]
                       if a in entry.get("attributes", {}) else None for a, n in counts.items()}
                for name, entry in trackers.items()}
        text += "\n\n" + render_table(rows, header=["AUC per attribute (sequences)"], decimals=1)
    return text


def describe_model(model: dict) -> str:
    """One line from an evaluation folder's model identity (docs/evaluation.md, "run.json")."""
    parts = [model.get("variant") or ", ".join(model.get("files") or []) or None,
             model.get("weights") and f"weights {model['weights']}", model.get("precision"),
             model.get("backend") and f"backend {model['backend']}"]
    return ", ".join(p for p in parts if p)


def per_sequence_scores(entry: dict) -> dict[str, dict[str, float]]:
    """One tracker's scores per sequence in percent, the benchmark's primary score first: AO, SR0.5, SR0.75 for
    GOT-10k; AUC, P_norm, P for the OPE benchmarks and TrackingNet."""
    if "got10k" in entry:
        return {n: {"AO": 100 * s["ao"], "SR0.5": 100 * s["sr"], "SR0.75": 100 * s["sr75"]}
                for n, s in entry["got10k"]["seq_wise"].items()}
    per = entry["trackingnet"]["sequences"] if "trackingnet" in entry else entry["sequences"]
    return {n: {"AUC": 100 * s["auc"], "P_norm": 100 * s["norm_precision"], "P": 100 * s["precision"]}
            for n, s in per.items()}


def per_sequence_table(result: dict) -> str:
    """Every sequence's scores, worst first by the first tracker's primary score; several trackers side by side
    (their columns numbered as the legend in the header says)."""
    scores = {name: per_sequence_scores(entry) for name, entry in result["trackers"].items()}
    names = list(scores)
    first = scores[names[0]]
    primary = next(iter(next(iter(first.values()))))
    rows: dict[str, dict[str, float]] = {s: {} for s in sorted(first, key=lambda s: (first[s][primary], s))}
    for k, name in enumerate(names, start=1):
        for sequence, values in scores[name].items():
            rows.setdefault(sequence, {}).update({f"{m}{f' [{k}]' if len(names) > 1 else ''}": v
                                                  for m, v in values.items()})
    header = [f"{result['title']}{' ' + result['split'] if result.get('split') else ''}: per sequence, worst first by "
              f"{primary} of {names[0]}"]
    if len(names) > 1:
        header.append("  ".join(f"[{k}] {name}" for k, name in enumerate(names, start=1)))
    return render_table(rows, header=header, first="sequence", decimals=1)


def write_report(result: dict, output_dir: str | Path, *, plots: bool = True) -> list[Path]:
    """``metrics.json``, ``table.txt`` and the PNG plots in ``output_dir``; returns the files written."""
    output_dir = Path(output_dir)
    written = [output_dir / "metrics.json", output_dir / "table.txt"]
    atomic_write_text(written[0], json.dumps(result, indent=2, allow_nan=True) + "\n")
    atomic_write_text(written[1], table(result) + "\n")
    if plots:
        from .plots import plot_report

        written += plot_report(result, output_dir)
    return written
