"""One speed measurement: each backend's network alone and inside a tracker step, at several batch sizes, beside
the timm yardstick in the same interleaved run, and the table ``lorat benchmark`` prints."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..data.synthetic import moving_box_videos
from ..model.network import LoRAT
from .hardware import describe_hardware, hardware_info
from .timing import load_average, median_ratio, ratio_range, time_interleaved
from .yardstick import matmul_peak, timm_blocks

FRAME_SIZE = (640, 480)  # the synthetic decoded frames the tracker step is timed on (W, H)


@dataclass
class Row:
    """One (backend, batch size) measurement; times are per frame (call time / batch), medians over repeats."""

    backend: str
    batch: int
    model_ms: float
    tracker_ms: float | None = None
    timm_ms: float | None = None
    model_vs_timm: float | None = None    # median per-repeat ratio, same batch
    tracker_vs_timm: float | None = None
    batch_speedup: float | None = None    # tracker frames/s at this batch / at batch 1 (same backend)
    model_batch_speedup: float | None = None
    model_tflops: float | None = None     # the network's FLOPs per frame / model time per frame
    model_speedup: float | None = None    # frames/s over the baseline backend's, median per-repeat ratio, same batch
    tracker_speedup: float | None = None
    model_speedup_range: tuple[float, float] | None = None  # the smallest and largest per-repeat ratio
    tracker_speedup_range: tuple[float, float] | None = None


@dataclass
class SpeedReport:
    variant: str
    weights: str
    device: str
    tokens: int
    frame_size: tuple[int, int]
    repeats: int
    hardware: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flops_per_frame: int | None = None    # see network_flops
    matmul_tflops: float | None = None    # see matmul_peak: what this device's matrix products reach
    matmul: str | None = None             # which product that was
    baseline: str | None = None           # the backend the speed-ups are relative to
    load_before: float | None = None      # the one-minute load average before and after the timings
    load_after: float | None = None


def measure_speed(backends: dict[str, Any], model: LoRAT, *, device: torch.device | str, variant: str,
                  weights: str, batch_sizes: Sequence[int] = (1, 8), repeats: int = 7, warmup: int = 1,
                  compare_timm: bool = True, tracker: bool = True, frame_size: tuple[int, int] = FRAME_SIZE,
                  steps_per_call: int = 1, flops_per_frame: int | None = None,
                  matmul_dtype: torch.dtype | None = None, baseline: str | None = None) -> SpeedReport:
    """Time each backend (name -> :class:`~lorat_plugin.engine.network.NetworkBackend`) alone and inside a
    :class:`~lorat_plugin.engine.TrackingEngine` step, for every batch size, interleaved with the timm yardstick.

    A tracker "frame" is one sequence advanced by one frame: crop on the device, normalise, the network, the
    window/argmax post-processing and the box mapped back, from frames that are already decoded (as the
    evaluation harness hands them over). ``steps_per_call`` tracker steps make one timed sample.
    ``flops_per_frame`` (:func:`network_flops`) adds each network's achieved TFLOPS; ``matmul_dtype`` times
    :func:`matmul_peak` at that precision first, the rate to compare them with. ``baseline`` (one of the backends'
    names) adds every other backend's speed-up over it, paired per repeat. The network inputs are ``model``'s
    sample data."""
    from ..engine import TrackingEngine

    config, device = model.config, torch.device(device)
    result = SpeedReport(variant=variant, weights=weights, device=str(device), tokens=config.tokens,
                         frame_size=tuple(frame_size), repeats=repeats, hardware=hardware_info(device),
                         flops_per_frame=flops_per_frame, baseline=baseline, load_before=load_average())
    if matmul_dtype is not None:
        result.matmul_tflops, result.matmul = matmul_peak(device, matmul_dtype)
    yardstick = timm_blocks(config).to(device) if compare_timm else None
    engines = {name: TrackingEngine(backend) for name, backend in backends.items()} if tracker else {}
    first: dict[str, tuple[list[float], list[float] | None]] = {}  # network, tracker samples at the first batch
    for batch in batch_sizes:
        candidates: dict[str, Callable[[], Any]] = {}
        inputs = model.get_sample_data(batch, device)
        if yardstick is not None:
            tokens = torch.randn(batch, config.tokens, config.embed_dim, device=device)
            candidates["timm"] = torch.inference_mode()(lambda tokens=tokens: yardstick(tokens))
        for name, backend in backends.items():
            candidates[f"model:{name}"] = lambda backend=backend: backend(*inputs)
        if tracker:
            sequences, boxes = moving_box_videos(batch, 8, frame_size)
            for name, engine in engines.items():
                candidates[f"tracker:{name}"] = _tracker_call(engine, sequences, boxes, steps_per_call)
        samples = time_interleaved(candidates, repeats=repeats, warmup=warmup, device=device)
        per_frame = {k: [s / batch / (steps_per_call if k.startswith("tracker:") else 1) for s in v]
                     for k, v in samples.items()}
        timm = per_frame.get("timm")
        for name in backends:
            network = per_frame[f"model:{name}"]
            track = per_frame.get(f"tracker:{name}")
            row = Row(backend=name, batch=batch, model_ms=1e3 * statistics.median(network),
                      tracker_ms=1e3 * statistics.median(track) if track else None,
                      timm_ms=1e3 * statistics.median(timm) if timm else None)
            if flops_per_frame:
                row.model_tflops = flops_per_frame / row.model_ms / 1e9
            if baseline is not None and name != baseline:
                row.model_speedup = median_ratio(per_frame[f"model:{baseline}"], network)
                row.model_speedup_range = ratio_range(per_frame[f"model:{baseline}"], network)
                if track:
                    row.tracker_speedup = median_ratio(per_frame[f"tracker:{baseline}"], track)
                    row.tracker_speedup_range = ratio_range(per_frame[f"tracker:{baseline}"], track)
            if timm:
                row.model_vs_timm = median_ratio(network, timm)
                row.tracker_vs_timm = median_ratio(track, timm) if track else None
            if batch == batch_sizes[0]:
                first[name] = (network, track)
            else:
                row.model_batch_speedup = statistics.median(first[name][0]) / statistics.median(network)
                if track and first[name][1]:
                    row.batch_speedup = statistics.median(first[name][1]) / statistics.median(track)
            result.rows.append(row)
    result.load_after = load_average()
    return result


def _tracker_call(engine: Any, sequences: list[list[np.ndarray]], boxes: np.ndarray, steps: int
                  ) -> Callable[[], None]:
    """A closure advancing ``len(sequences)`` sequences by ``steps`` frames (restarting them when they run out)."""
    def endless() -> Iterator[tuple[Any, list[np.ndarray]]]:
        while True:
            states = engine.initialize([s[0] for s in sequences], boxes)
            yield from ((states, [s[i] for s in sequences]) for i in range(1, len(sequences[0])))
    pending = endless()

    def call() -> None:
        for _ in range(steps):
            engine.track(*next(pending))
    return call


def _ratio(median: float, spread: tuple[float, float] | None) -> str:
    return f"{median:.2f}x" + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread is not None else "")


def format_speed_report(result: SpeedReport) -> str:
    """The table ``lorat benchmark`` prints."""
    lines = [f"LoRAT {result.variant} ({result.weights}) on {result.device}: {result.tokens} tokens per frame, "
             f"median of {result.repeats} interleaved repeats, tracker frames {result.frame_size[0]}x"
             f"{result.frame_size[1]} already decoded", describe_hardware(result.hardware)]
    if result.flops_per_frame:
        line = f"network: {result.flops_per_frame / 1e9:.2f} GFLOP per frame"
        if result.matmul_tflops:
            line += f"; a {result.matmul} on this device: {result.matmul_tflops:.2f} TFLOPS"
        lines.append(line)
    if result.load_before is not None and result.load_after is not None:
        lines.append(f"load average (1 min) before / after the timings: {result.load_before:.2f} / "
                     f"{result.load_after:.2f} (other work on the machine moves every figure)")
    lines.append("")
    width = max([len("backend"), *(len(row.backend) for row in result.rows)])  # names differ at their ends
    header = (f"{'backend':{width}} {'batch':>5} {'model ms':>9} {'model fps':>9} {'tracker ms':>10} {'tracker fps':>11}"
              f" {'TFLOPS':>6} {'timm fp32 ms':>12} {'model/timm':>10} {'tracker/timm':>12} {'vs batch 1':>10}")
    lines += [header, "-" * len(header)]
    for row in result.rows:
        def num(value: float | None, width: int, digits: int = 1) -> str:
            return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"
        speedup = f"{row.batch_speedup:9.2f}x" if row.batch_speedup is not None else (
            f"{row.model_batch_speedup:9.2f}x" if row.model_batch_speedup is not None else f"{'-':>10}")
        lines.append(f"{row.backend:{width}} {row.batch:5d} {num(row.model_ms, 9)} {num(1e3 / row.model_ms, 9)} "
                     f"{num(row.tracker_ms, 10)} {num(1e3 / row.tracker_ms if row.tracker_ms else None, 11)} "
                     f"{num(row.model_tflops, 6, 2)} {num(row.timm_ms, 12)} {num(row.model_vs_timm, 10, 3)} "
                     f"{num(row.tracker_vs_timm, 12, 3)} {speedup}")
    lines += ["", "ms and fps are per frame (one sequence advanced by one frame; batched calls divided by the batch, "
                 "so this is throughput, not the per-sequence speed `lorat evaluate` reports). "
                 "x/timm: median per-repeat ratio to the bare timm blocks in fp32 at the same batch size (< 1 is "
                 "faster). vs batch 1: tracker frames/s over those at the first batch size (same backend). "
                 "TFLOPS: the network's FLOPs per frame over its model time; near the matmul rate above, a larger "
                 "batch has little left to gain."]
    speedups = [row for row in result.rows if row.model_speedup is not None]
    if speedups:
        lines += ["", f"frames/s over {result.baseline} (median of per-repeat ratios, > 1 is faster; in brackets "
                      "the smallest and largest of them):"]
        lines += [f"  {row.backend}, batch {row.batch}: network {_ratio(row.model_speedup, row.model_speedup_range)}"
                  + (f", tracker step {_ratio(row.tracker_speedup, row.tracker_speedup_range)}"
                     if row.tracker_speedup is not None else "")
                  for row in speedups]
    lines += result.notes
    return "\n".join(lines)
