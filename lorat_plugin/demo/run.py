"""Running the demo: the shipped demo model and classical baselines over the procedural demo benchmark through the
evaluation harness, scored with the GOT-10k protocol (AO, SR) and pytracking's OPE protocol (AUC, precision)."""
from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.sequence import Sequence
from .spec import demo_benchmark_spec, prepare_demo_benchmark
from .video import render_sequence_video

log = logging.getLogger(__name__)

DEMO_TRACKER = "LoRAT-demo"


@dataclass
class DemoResult:
    output: Path
    table: str
    metrics: dict[str, dict[str, float | None]]  # tracker -> column -> value (percent; FPS as is)
    reports: list[Path] = field(default_factory=list)
    video: Path | None = None


def run_demo(output: str | Path, model: Any = None, *, tracker_name: str = DEMO_TRACKER,
             baselines: tuple[str, ...] = ("csrt", "kcf", "static"), video: bool = True,
             video_sequence: str | None = None, batch_size: int = 16, device: str | None = None,
             dtype: str | None = None, benchmark: dict[str, Any] | None = None, progress: bool = True
             ) -> DemoResult:
    """The whole demo into ``output``: ``benchmark/``, ``results/<tracker>/``, ``report/``, ``video/``.
    Re-running reuses the benchmark and the baselines' results; the model is always run again."""
    from ..evaluation import evaluate, load_results, run_benchmark, write_report
    from ..trackers.baselines import baseline

    output = Path(output)
    sequences = prepare_demo_benchmark(output / "benchmark", benchmark)
    trackers: list[tuple[str, Any]] = []
    if model is not None:
        from ..engine import TrackingEngine
        trackers.append((tracker_name, TrackingEngine(model, device=device, dtype=dtype)))
    for name in baselines:
        adapter = baseline(name)
        trackers.append((adapter.name, adapter))
    if not trackers:
        raise ValueError("nothing to run: no model and no baselines")
    if model is not None:  # the model may have changed since the last run; the baselines are deterministic
        shutil.rmtree(output / "results" / tracker_name, ignore_errors=True)
    results = []
    for name, tracker in trackers:
        folder = output / "results" / name
        log.info("running %s over %d sequences", name, len(sequences))
        run_benchmark(tracker, sequences, folder, tracker_name=name, dataset="got10k", split="val",
                      root=output / "benchmark", batch_size=batch_size, progress=progress)
        results.append(load_results(folder, "got10k", sequences, name=name))

    got10k = evaluate("got10k", sequences, results)
    ope = evaluate("procedural", sequences, results)
    got10k["title"] = ope["title"] = "Procedural test split"
    reports = write_report(got10k, output / "report") + write_report(ope, output / "report" / "ope")
    metrics = combined_metrics(got10k, ope)
    table = format_table(metrics, sequences)
    (output / "report" / "demo_table.txt").write_text(table + "\n", encoding="utf-8")
    reports.append(output / "report" / "demo_table.txt")
    video_path = None
    if video:
        names = [s.name for s in sequences]
        name = video_sequence or demo_benchmark_spec().get("video_sequence")
        name = name if name in names else names[0]
        video_path = render_sequence_video(sequences, results, name, output / "video")
    return DemoResult(output, table, metrics, reports, video_path)


def combined_metrics(got10k: dict, ope: dict) -> dict[str, dict[str, float | None]]:
    rows = {}
    for name, entry in got10k["trackers"].items():
        overall = entry["got10k"]["overall"]
        scores = ope["trackers"][name]["ope"]
        rows[name] = {"AO": 100 * overall["ao"], "SR0.5": 100 * overall["sr50"], "SR0.75": 100 * overall["sr75"],
                      "AUC": 100 * scores["auc"], "P@20": 100 * scores["precision"], "FPS": entry.get("fps")}
    return rows


def format_table(metrics: dict[str, dict[str, float | None]], sequences: list[Sequence]) -> str:
    frames = sum(len(s) for s in sequences)
    columns = ["AO", "SR0.5", "SR0.75", "AUC", "P@20", "FPS"]
    width = max(12, *(len(n) for n in metrics))
    lines = [f"Procedural test split: {len(sequences)} sequences, {frames} frames, photographs never seen in training",
             "AO, SR0.5, SR0.75: GOT-10k protocol; AUC, P@20: OPE (pytracking); FPS: tracker time per frame",
             f"{'tracker':<{width}} " + " ".join(f"{c:>7}" for c in columns)]
    for name, row in metrics.items():
        cells = ["-" if row[c] is None or not math.isfinite(row[c]) else
                 (f"{row[c]:.0f}" if c == "FPS" else f"{row[c]:.1f}") for c in columns]
        lines.append(f"{name:<{width}} " + " ".join(f"{v:>7}" for v in cells))
    return "\n".join(lines)

