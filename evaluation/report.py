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
from pathlib import Path
from typing import Any

import numpy as np

from lorat_plugin.data.sequence import Sequence
from lorat_plugin.files import atomic_write_text

from . import metrics as M
from .benchmarks import Benchmark, benchmark
from .formats import TrackerResults, format_table, merge_runs, native_boxes, pytracking_name, read_layout
from .records import load_records, read_run_info

PROTOCOLS = {
    "got10k": "GOT-10k: got10k toolkit ExperimentGOT10k.report / GOT-10k server (frame 0 excluded, cover > 0, "
              "IoU clipped to the image, frames of all sequences and runs pooled)",
    "ope": "OPE as pytracking extract_results computes it (the LoRAT paper's convention): 21 thresholds with '>', "
           "AUC = mean of the curve, P at 20 px, P_norm at 0.20, per-sequence curves averaged; 'lasot_toolkit': "
           "the LaSOT MATLAB toolkit; 'got10k_otb': got10k ExperimentOTB/UAV123/NfS",
    "trackingnet": "TrackingNet devkit metrics.py / server: integer-rounded boxes, 21-point curves, trapezoid areas",
}


def load_results(path: str | Path, dataset: str, sequences: list[Sequence], *, name: str | None = None
                 ) -> TrackerResults:
    """One tracker's results on ``sequences``: an evaluation folder (with ``run.json``) or a layout folder."""
    path = Path(path)
    info = read_run_info(path)
    names = [s.name for s in sequences]
    if info is None:
        if not path.is_dir() or _has_results(path, names[0], dataset):
            return read_layout(path, names, dataset, name=name)
        # a folder holding one tracker's folder, or the run folders of one tracker (<tracker>_001[_tracking_result])
        inner = sorted(p for p in path.iterdir() if p.is_dir() and _has_results(p, names[0], dataset))
        runs = [_RUN_FOLDER.fullmatch(p.name) for p in inner]
        if len(inner) > 1 and all(runs) and len({m.group(1) for m in runs}) == 1:
            return merge_runs([read_layout(p, names, dataset) for p in inner], name or runs[0].group(1))
        if len(inner) == 1:
            return read_layout(inner[0], names, dataset, name=name)
        if len(inner) > 1:
            raise ValueError(f"{path} holds results of several trackers ({', '.join(p.name for p in inner)}): "
                             "pass their folders one by one")
        return read_layout(path, names, dataset, name=name)
    if info.get("dataset") not in (None, "", dataset):
        raise ValueError(f"{path} holds {info['dataset']} results, not {dataset}")
    records = load_records(path)
    missing = [n for n in names if n not in records]
    if missing:
        raise FileNotFoundError(f"{path}: no results for {len(missing)} of {len(names)} sequences, e.g. {missing[0]}"
                                " (run `lorat evaluate` again to finish them)")
    runs, times = {}, {}
    for sequence in sequences:
        by_run = records[sequence.name]
        # the values the official tool reads: our result files are written with 3 decimals
        runs[sequence.name] = [np.loadtxt(io.StringIO(format_table(native_boxes(by_run[r].boxes, dataset), "%.3f",
                                                                   ",")), delimiter=",", ndmin=2)
                               for r in sorted(by_run)]
        times[sequence.name] = np.loadtxt(io.StringIO(format_table(
            np.stack([by_run[r].times for r in sorted(by_run)], axis=1), "%.8f", ",")), delimiter=",", ndmin=2)
    return TrackerResults(name or info.get("tracker") or path.name, runs, times, str(path))


_RUN_FOLDER = re.compile(r"(.+)_\d{3}(?:_tracking_result)?")


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
        name = tracker.name
        for k in itertools.count(2):  # two folders of one tracker (e.g. two checkpoints) must stay apart
            if name not in out["trackers"]:
                break
            name = f"{tracker.name} ({k})"
        entry: dict[str, Any] = {"source": tracker.source,
                                 "runs": max(len(r) for r in tracker.runs.values()),
                                 "fps": _fps(tracker, sequences)}
        if info.protocol == "got10k":
            entry["got10k"] = _got10k(sequences, tracker)
        elif info.protocol == "trackingnet":
            entry["trackingnet"] = _trackingnet(sequences, tracker, dataset)
        else:
            entry.update(_ope(sequences, tracker, info))
        out["trackers"][name] = entry
    return out


def _fps(tracker: TrackerResults, sequences: list[Sequence]) -> float | None:
    times = [tracker.times[s.name].ravel() for s in sequences if s.name in tracker.times]
    if not times:
        return None
    t = np.concatenate(times)
    t = t[np.isfinite(t) & (t > 0)]
    return float(len(t) / t.sum()) if len(t) else None


def _got10k(sequences: list[Sequence], tracker: TrackerResults) -> dict:
    per_sequence = {}
    for s in sequences:
        cover = s.attributes.get("cover")
        if cover is None:  # a GOT-10k-layout set without cover.label: visible frames count
            cover = s.visible.astype(int)
        resolution = s.attributes.get("resolution") or _image_size(s)
        times = tracker.times.get(s.name)
        per_sequence[s.name] = M.got10k_sequence(tracker.runs[s.name], native_boxes(s.boxes, "got10k"), cover,
                                                 resolution, times)
    return M.got10k_benchmark(per_sequence)


def _image_size(sequence: Sequence) -> tuple[int, int]:
    from PIL import Image

    with Image.open(sequence.frames[0]) as image:  # reads the header only
        return image.size


def _target_visible(sequence: Sequence) -> np.ndarray:
    a = sequence.attributes
    if "full_occlusion" in a or "out_of_view" in a:
        hidden = np.zeros(len(sequence), dtype=bool)
        for key in ("full_occlusion", "out_of_view"):
            if key in a:
                hidden |= np.asarray(a[key], dtype=bool)
        return ~hidden
    return np.asarray(sequence.visible, dtype=bool)


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
            per_run = [M.lasot_toolkit_sequence(boxes, gt, absent) for boxes in tracker.runs[s.name]]
            curves[s.name] = tuple(np.mean([c[i] for c in per_run], axis=0) for i in range(3))
        result["lasot_toolkit"] = M.lasot_toolkit_benchmark(curves)
    if info.also_got10k_otb:
        curves, speeds = {}, {}
        for s in sequences:  # ExperimentOTB reads one result file per sequence: the first run
            curves[s.name] = M.got10k_otb_sequence(tracker.runs[s.name][0], native_boxes(s.boxes, info.key),
                                                   drop_nan_gt=info.key == "uav123")
            t = tracker.times.get(s.name)
            speeds[s.name] = M.got10k_otb_speed(None if t is None else t[:, 0])
        result["got10k_otb"] = M.got10k_otb_benchmark(curves, speeds)
    return result


def _attribute_breakdown(sequences: list[Sequence], curves: dict[str, M.OPECurves]) -> dict:
    names: list[str] = []
    for s in sequences:
        for key in s.attributes.get("challenges", {}):
            if key not in names:
                names.append(key)
    breakdown = {}
    for key in names:
        members = [s.name for s in sequences if s.attributes.get("challenges", {}).get(key)]
        if members:
            mean = M.OPECurves.mean([curves[n] for n in members])
            breakdown[key] = {"sequences": len(members), **mean.scores(), "success_curve": mean.success.tolist()}
    return breakdown


def _trackingnet(sequences: list[Sequence], tracker: TrackerResults, dataset: str) -> dict:
    curves = {}
    for s in sequences:
        gt = native_boxes(s.boxes, dataset)
        per_run = [M.trackingnet_sequence(boxes, gt) for boxes in tracker.runs[s.name]]
        curves[s.name] = tuple(np.mean([c[i] for c in per_run], axis=0) for i in range(3))
    return M.trackingnet_benchmark(curves)


# ------------------------------------------------------------------------------------------------ presentation

def headline(entry: dict) -> dict[str, float | None]:
    """The columns papers report, as percentages (FPS as is)."""
    fps = entry.get("fps")
    if "got10k" in entry:
        o = entry["got10k"]["overall"]
        row = {"AO": o["ao"], "SR0.5": o["sr50"], "SR0.75": o["sr75"]}
    elif "trackingnet" in entry:
        t = entry["trackingnet"]
        row = {"AUC": t["success"], "P_norm": t["norm_precision"], "P": t["precision"]}
    else:
        o = entry["ope"]
        row = {"AUC": o["auc"], "P_norm": o["norm_precision"], "P": o["precision"], "SR0.5": o["sr50"],
               "SR0.75": o["sr75"]}
        if "lasot_toolkit" in entry:
            row["toolkit AUC"] = entry["lasot_toolkit"]["auc"]
            row["toolkit P_n"] = entry["lasot_toolkit"]["norm_precision"]
            row["toolkit P"] = entry["lasot_toolkit"]["precision"]
        if "got10k_otb" in entry:
            row["got10k AUC"] = entry["got10k_otb"]["success_score"]
            row["got10k P@20"] = entry["got10k_otb"]["precision_score"]
    row = {k: None if v is None else 100.0 * v for k, v in row.items()}
    row["FPS"] = fps
    return row


def table(result: dict) -> str:
    """The printed table: one row per tracker, then (LaSOT) the AUC per challenge attribute."""
    rows = {name: headline(entry) for name, entry in result["trackers"].items()}
    columns = list(next(iter(rows.values())))
    width = max(12, *(len(n) for n in rows))
    lines = [f"{result['title']}{' ' + result['split'] if result.get('split') else ''} "
             f"({result['sequences']} sequences)",
             f"{'tracker':<{width}} " + " ".join(f"{c:>11}" for c in columns)]
    for name, row in rows.items():
        cells = ["-" if row[c] is None else f"{row[c]:.2f}" for c in columns]
        lines.append(f"{name:<{width}} " + " ".join(f"{v:>11}" for v in cells))
    attributes = [n for n in next(iter(result["trackers"].values())).get("attributes", {})]
    if attributes:
        lines.append("")
        lines.append("AUC per attribute (sequences)")
        lines.append(f"{'tracker':<{width}} " + " ".join(f"{a:>6}" for a in attributes))
        for name, entry in result["trackers"].items():
            cells = [f"{100 * entry['attributes'][a]['auc']:.1f}" if a in entry.get("attributes", {}) else "-"
                     for a in attributes]
            lines.append(f"{name:<{width}} " + " ".join(f"{v:>6}" for v in cells))
        counts = next(iter(result["trackers"].values()))["attributes"]
        lines.append(f"{'(count)':<{width}} " + " ".join(f"{counts[a]['sequences']:>6}" for a in attributes))
    return "\n".join(lines)


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
