"""Running the demo: the shipped demo model and classical baselines over the procedural demo benchmark through the
evaluation harness, scored with the GOT-10k protocol (AO, SR) and pytracking's OPE protocol (AUC, precision)."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..files import atomic_write_text
from .spec import demo_benchmark_spec, prepare_demo_benchmark
from .video import render_sequence_video

log = logging.getLogger(__name__)

DEMO_TRACKER = "LoRAT-demo"
# baselines that run no model: their time is the harness's, so the table marks them instead of showing a speed
UNTIMED_BASELINES = ("static",)


@dataclass
class DemoResult:
    output: Path
    table: str
    metrics: dict[str, dict[str, float | str | None]]  # tracker -> column -> value (percent; FPS as is)
    reports: list[Path] = field(default_factory=list)
    video: Path | None = None


def run_demo(output: str | Path, model: Any = None, *, tracker_name: str = DEMO_TRACKER,
             baselines: tuple[str, ...] = ("csrt", "kcf", "static"), video: bool = True,
             video_sequence: str | None = None, batch_size: int | None = None, device: str | None = None,
             dtype: str | None = None, benchmark: dict[str, Any] | None = None, progress: bool = True,
             identity: Callable[[str], dict[str, Any]] | None = None) -> DemoResult:
    """The whole demo into ``output``: ``benchmark/``, ``results/<tracker>/``, ``report/``, ``video/``.
    Re-running reuses the benchmark and the baselines' results; the model is always run again. ``identity``
    (``ModelSpec.identity``) names the model in its ``run.json``; without it, a hash of the model's tensors does."""
    from ..evaluation import evaluate, load_results, render_table, run_benchmark, write_html_report, write_report
    from ..trackers.baselines import baseline

    output = Path(output)
    sequences = prepare_demo_benchmark(output / "benchmark", benchmark)
    trackers: list[tuple[str, Any]] = []
    model_identity = None
    if model is not None:
        from ..engine import TrackingEngine, precision_name
        from ..model import sources
        engine = TrackingEngine(model, device=device, dtype=dtype)
        batch_size = batch_size or engine.preferred_batch_size  # every tracker of the demo at the same batch
        precision = precision_name(engine.dtype)
        model_identity = identity(precision) if identity else sources.model_identity(precision, model=model)
        trackers.append((tracker_name, engine))
    batch_size = batch_size or 8  # baselines alone: as the evaluation runner's default
    trackers += [(adapter.name, adapter) for adapter in map(baseline, baselines)]
    untimed = {baseline(name).name for name in baselines if name in UNTIMED_BASELINES}
    if not trackers:
        raise ValueError("nothing to run: no model and no baselines")
    if model is not None:  # the model may have changed since the last run; the baselines are deterministic
        shutil.rmtree(output / "results" / tracker_name, ignore_errors=True)
    results = []
    for name, tracker in trackers:
        folder = output / "results" / name
        log.info("running %s over %d sequences", name, len(sequences))
        run_benchmark(tracker, sequences, folder, tracker_name=name, dataset="got10k", split="val",
                      root=output / "benchmark", batch_size=batch_size, progress=progress, timed=name not in untimed,
                      model=model_identity if name == tracker_name else None,
                      backend=engine.network.description if name == tracker_name else None)
        results.append(load_results(folder, "got10k", sequences, name=name))

    got10k = evaluate("got10k", sequences, results)
    ope = evaluate("procedural", sequences, results)
    got10k["title"] = ope["title"] = "Procedural test split"
    reports = write_report(got10k, output / "report") + write_report(ope, output / "report" / "ope")
    metrics = combined_metrics(got10k, ope)
    footer = demo_footer(model) if tracker_name == DEMO_TRACKER and model is not None else []
    frames = sum(len(s) for s in sequences)
    per_call = "one sequence" if batch_size == 1 else f"{batch_size} sequences"
    table = render_table(metrics, header=[
        f"Procedural test split: {len(sequences)} sequences, {frames} frames, photographs never seen in training",
        "AO, SR0.5, SR0.75: GOT-10k protocol; AUC, P@20: OPE (pytracking)",
        f"FPS: frames per second per sequence with {per_call} per call (each call counted whole, "
        "warm-up left out); throughput: all sequences' frames per second (docs/evaluation.md, \"Speed\")"],
        footer=footer and ["", *footer], decimals=1)
    reports.append(output / "report" / "demo_table.txt")
    atomic_write_text(reports[-1], table + "\n")
    # the page with frame strips of the three worst sequences only, so the demo stays about as fast
    reports.append(write_html_report(got10k, output / "report", sequences, results, plots=reports, strips=3,
                                     footer=footer))
    video_path = None
    if video:
        names = [s.name for s in sequences]
        name = video_sequence or demo_benchmark_spec().get("video_sequence")
        name = name if name in names else names[0]
        video_path = render_sequence_video(sequences, results, name, output / "video")
    return DemoResult(output, table, metrics, reports, video_path)


def combined_metrics(got10k: dict, ope: dict) -> dict[str, dict[str, float | str | None]]:
    """The demo table: GOT-10k and OPE scores in percent, then the FPS per sequence and the throughput of
    `lorat report`'s table."""
    from ..evaluation.report import speed_columns

    rows = {}
    for name, entry in got10k["trackers"].items():
        overall = entry["got10k"]["overall"]
        scores = ope["trackers"][name]["ope"]
        speed = speed_columns(entry)
        rows[name] = {"AO": 100 * overall["ao"], "SR0.5": 100 * overall["sr50"], "SR0.75": 100 * overall["sr75"],
                      "AUC": 100 * scores["auc"], "P@20": 100 * scores["precision"],
                      "FPS": speed["FPS"], "throughput": speed["throughput"]}
    return rows


def demo_footer(model: Any) -> list[str]:
    """What LoRAT-demo is and where LoRAT's published accuracy comes from: a newcomer should not read the demo's
    table as "LoRAT loses to CSRT"."""
    c = model.config
    size = sum(p.numel() for p in model.parameters()) / 1e6
    return [f"LoRAT-demo: a {size:.1f}M-parameter LoRAT (ViT width {c.embed_dim}, depth {c.depth}, {c.search_size} px "
            "search region) whose backbone was trained from scratch on the procedural train split in about an hour "
            "on two CPU cores, in place of DINOv2's pre-training: it shows the pipeline, not LoRAT's accuracy.",
            "LoRAT's published accuracy comes from the released weights (the paper's B-224: LaSOT 71.7 AUC, GOT-10k "
            "72.1 AO); evaluate them with `lorat evaluate --dataset lasot --root /data/LaSOT --output runs/lasot "
            "--variant B-224 --weights-dir DIR` (docs/evaluation.md)."]
