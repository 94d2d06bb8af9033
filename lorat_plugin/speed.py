"""Measure LoRAT's speed on this machine: the network alone and the whole tracker step, at several batch sizes,
beside a yardstick (the bare timm ViT blocks of the same size over the same tokens in fp32) timed in the same run.

Timings are interleaved: every repeat runs each candidate once, in turn, so a change in the machine's load during
the run hits every candidate alike; the figures are medians over repeats, and every ratio is the median of the
per-repeat ratios. ``lorat benchmark`` prints what :func:`run_benchmark` returns (docs/speed.md).
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .geometry import rect_iou
from .model import ModelConfig

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile")
FRAME_SIZE = (640, 480)  # the synthetic decoded frames the tracker step is timed on (W, H)


# ---- what machine this is ---------------------------------------------------------------------------------------

def hardware_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The CPU (model name, logical cores usable here, bf16/AMX flags), torch's thread count, the GPU when
    ``device`` is one, and the software versions that matter for speed."""
    device = torch.device(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {"cpu": _cpu_name(), "cpu_cores": cores, "cpu_flags": _cpu_flags(),
                            "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                            "os": platform.platform(terse=True), "python": platform.python_version()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, compute {props.major}.{props.minor})"
        info["cuda"] = torch.version.cuda
    elif device.type == "mps":
        info["gpu"] = "Apple MPS"
    versions = {"torch": torch.__version__}
    for package in ("timm", "numpy", "onnxruntime", "onnx"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    info["versions"] = versions
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in CPU_FLAGS if flag in present]
    except OSError:
        pass
    return []


def describe_hardware(info: dict[str, Any]) -> str:
    lines = [f"CPU: {info['cpu']}, {info['cpu_cores']} logical cores usable, torch threads {info['torch_threads']}"
             + (f", flags {' '.join(info['cpu_flags'])}" if info["cpu_flags"] else "")]
    if "gpu" in info:
        lines.append(f"GPU: {info['gpu']}" + (f", CUDA {info['cuda']}" if info.get("cuda") else ""))
    lines.append("software: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
                 + f", Python {info['python']}, {info['os']}")
    return "\n".join(lines)


# ---- timing -----------------------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_interleaved(candidates: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1,
                     device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Seconds per call of each candidate, ``repeats`` samples each, taken round-robin after ``warmup`` untimed
    rounds (the device is synchronised around every call)."""
    device = torch.device(device)
    for _ in range(warmup):
        for call in candidates.values():
            call()
    synchronize(device)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, call in candidates.items():
            start = time.perf_counter()
            call()
            synchronize(device)
            samples[name].append(time.perf_counter() - start)
    return samples


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of the per-repeat ratios (samples taken in the same round are paired)."""
    return float(statistics.median(n / d for n, d in zip(numerator, denominator)))


# ---- the yardstick ----------------------------------------------------------------------------------------------

def timm_blocks(config: ModelConfig) -> nn.Module:
    """The bare timm ViT blocks of ``config``'s size (same width, depth, heads, FFN) and the final norm, fp32:
    what every number is compared against. Randomly initialised (timing only)."""
    from functools import partial

    from timm.layers import SwiGLUPacked
    from timm.models.vision_transformer import Block

    mlp = partial(SwiGLUPacked, gate_last=False) if config.ffn == "swiglu" else None
    kwargs = {"mlp_layer": mlp} if mlp is not None else {}
    mlp_ratio = 2 * config.ffn_hidden / config.embed_dim if config.ffn == "swiglu" else config.mlp_ratio
    norm = partial(nn.LayerNorm, eps=1e-6)
    return nn.Sequential(*[Block(config.embed_dim, config.num_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
                                 init_values=config.layer_scale_init, norm_layer=norm, **kwargs)
                           for _ in range(config.depth)], norm(config.embed_dim)).eval()


# ---- synthetic work ---------------------------------------------------------------------------------------------

def network_flops(model: nn.Module, config: ModelConfig) -> int:
    """Floating-point operations of one frame through ``model`` (2 per multiply-add of its matrix products,
    convolution and attention, as ``torch.utils.flop_counter`` counts them), from a batch-1 forward pass on the
    model's device. Attention runs on the math kernel while counting: the counter does not see fused CPU kernels."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        model(*network_inputs(config, 1, device))
    return int(counter.get_total_flops())


def matmul_peak(device: torch.device | str, dtype: torch.dtype, size: int | None = None, repeats: int = 5
                ) -> tuple[float, str]:
    """(TFLOPS, description) of a square ``size``-cubed ``torch.matmul`` at ``dtype`` on ``device``: the rate this
    device's matrix products reach when they have all the rows they want. A network already near it at batch 1
    cannot gain much from batching (docs/speed.md)."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device, dtype) for _ in range(2))
    with torch.inference_mode():
        seconds = statistics.median(time_interleaved({"mm": lambda: a @ b}, repeats=repeats, device=device)["mm"])
    return 2 * size ** 3 / seconds / 1e12, f"{size}x{size}x{size} {str(dtype).replace('torch.', '')} torch.matmul"


def network_inputs(config: ModelConfig, batch: int, device: torch.device, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised-image-like template and search tensors and a template mask with the target in the middle."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 3, config.template_size, config.template_size, generator=generator)
    x = torch.randn(batch, 3, config.search_size, config.search_size, generator=generator)
    t = config.template_grid
    mask = torch.zeros(batch, t, t, dtype=torch.long)
    mask[:, t // 4:t - t // 4, t // 4:t - t // 4] = 1
    return z.to(device), x.to(device), mask.to(device)


def synthetic_sequences(count: int, frames: int, size: tuple[int, int] = FRAME_SIZE, seed: int = 0
                        ) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """``count`` sequences of ``frames`` decoded frames (H x W x 3 uint8: textured background, a bright target
    moving along a circle) and their init boxes (x, y, w, h)."""
    rng = np.random.default_rng(seed)
    width, height = size
    sequences, boxes = [], []
    for s in range(count):
        background = rng.integers(0, 200, (height, width, 3), dtype=np.uint8)
        target_w, target_h = width // 8 + 4 * s, height // 6
        sequence = []
        for f in range(frames):
            angle = 2 * np.pi * (f / max(frames, 1) + s / max(count, 1))
            x = int(width / 2 + width / 5 * np.cos(angle) - target_w / 2)
            y = int(height / 2 + height / 5 * np.sin(angle) - target_h / 2)
            frame = background.copy()
            frame[y:y + target_h, x:x + target_w] = (230, 40 + 20 * s % 200, 40)
            sequence.append(frame)
            if f == 0:
                boxes.append((x, y, target_w, target_h))
        sequences.append(sequence)
    return sequences, np.array(boxes, dtype=np.float64)


# ---- the benchmark ----------------------------------------------------------------------------------------------

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


@dataclass
class BenchmarkResult:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_benchmark(backends: dict[str, Any], config: ModelConfig, *, device: torch.device | str, variant: str,
                  weights: str, batch_sizes: Sequence[int] = (1, 8), repeats: int = 7, warmup: int = 1,
                  compare_timm: bool = True, tracker: bool = True, frame_size: tuple[int, int] = FRAME_SIZE,
                  steps_per_call: int = 1, flops_per_frame: int | None = None,
                  matmul_dtype: torch.dtype | None = None) -> BenchmarkResult:
    """Time each backend (name -> :class:`~lorat_plugin.engine.network.NetworkBackend`) alone and inside a
    :class:`~lorat_plugin.engine.TrackingEngine` step, for every batch size, interleaved with the timm yardstick.

    A tracker "frame" is one sequence advanced by one frame: crop on the device, normalise, the network, the
    window/argmax post-processing and the box mapped back, from frames that are already decoded (as the
    evaluation harness hands them over). ``steps_per_call`` tracker steps make one timed sample.
    ``flops_per_frame`` (:func:`network_flops`) adds each network's achieved TFLOPS; ``matmul_dtype`` times
    :func:`matmul_peak` at that precision first, the rate to compare them with."""
    from .engine import TrackingEngine

    device = torch.device(device)
    result = BenchmarkResult(variant=variant, weights=weights, device=str(device), tokens=config.tokens,
                             frame_size=tuple(frame_size), repeats=repeats, hardware=hardware_info(device),
                             flops_per_frame=flops_per_frame)
    if matmul_dtype is not None:
        result.matmul_tflops, result.matmul = matmul_peak(device, matmul_dtype)
    yardstick = timm_blocks(config).to(device) if compare_timm else None
    engines = {name: TrackingEngine(backend) for name, backend in backends.items()} if tracker else {}
    samples_b1: dict[str, list[float]] = {}
    model_b1: dict[str, list[float]] = {}
    for batch in batch_sizes:
        candidates: dict[str, Callable[[], Any]] = {}
        inputs = network_inputs(config, batch, device)
        if yardstick is not None:
            tokens = torch.randn(batch, config.tokens, config.embed_dim, device=device)

            def timm_call(tokens: torch.Tensor = tokens) -> None:
                with torch.inference_mode():
                    yardstick(tokens)
            candidates["timm"] = timm_call
        for name, backend in backends.items():
            candidates[f"model:{name}"] = lambda backend=backend: backend(*inputs)
        if tracker:
            sequences, boxes = synthetic_sequences(batch, 8, frame_size)
            for name, engine in engines.items():
                candidates[f"tracker:{name}"] = _tracker_call(engine, sequences, boxes, steps_per_call)
        samples = time_interleaved(candidates, repeats=repeats, warmup=warmup, device=device)
        per_frame = {k: [s / batch for s in v] for k, v in samples.items()}
        for k in list(per_frame):
            if k.startswith("tracker:"):
                per_frame[k] = [s / steps_per_call for s in per_frame[k]]
        timm = per_frame.get("timm")
        for name in backends:
            model = per_frame[f"model:{name}"]
            track = per_frame.get(f"tracker:{name}")
            row = Row(backend=name, batch=batch, model_ms=1e3 * statistics.median(model),
                      tracker_ms=1e3 * statistics.median(track) if track else None,
                      timm_ms=1e3 * statistics.median(timm) if timm else None)
            if flops_per_frame:
                row.model_tflops = flops_per_frame / row.model_ms / 1e9
            if timm:
                row.model_vs_timm = median_ratio(model, timm)
                row.tracker_vs_timm = median_ratio(track, timm) if track else None
            if batch == batch_sizes[0]:
                model_b1[name] = model
                if track:
                    samples_b1[name] = track
            else:
                row.model_batch_speedup = statistics.median(model_b1[name]) / statistics.median(model)
                if track and name in samples_b1:
                    row.batch_speedup = statistics.median(samples_b1[name]) / statistics.median(track)
            result.rows.append(row)
    return result


def _tracker_call(engine: Any, sequences: list[list[np.ndarray]], boxes: np.ndarray, steps: int
                  ) -> Callable[[], None]:
    """A closure advancing ``len(sequences)`` sequences by ``steps`` frames (restarting them when they run out)."""
    state: dict[str, Any] = {"states": engine.initialize([s[0] for s in sequences], boxes), "frame": 1}
    length = len(sequences[0])

    def call() -> None:
        for _ in range(steps):
            if state["frame"] >= length:
                state["states"] = engine.initialize([s[0] for s in sequences], boxes)
                state["frame"] = 1
            index = state["frame"]
            engine.track(state["states"], [s[index] for s in sequences])
            state["frame"] += 1
    return call


def format_result(result: BenchmarkResult) -> str:
    """The table ``lorat benchmark`` prints."""
    lines = [f"LoRAT {result.variant} ({result.weights}) on {result.device}: {result.tokens} tokens per frame, "
             f"median of {result.repeats} interleaved repeats, tracker frames {result.frame_size[0]}x"
             f"{result.frame_size[1]} already decoded", describe_hardware(result.hardware)]
    if result.flops_per_frame:
        line = f"network: {result.flops_per_frame / 1e9:.2f} GFLOP per frame"
        if result.matmul_tflops:
            line += f"; a {result.matmul} on this device: {result.matmul_tflops:.2f} TFLOPS"
        lines.append(line)
    lines.append("")
    header = (f"{'backend':52} {'batch':>5} {'model ms':>9} {'model fps':>9} {'tracker ms':>10} {'tracker fps':>11}"
              f" {'TFLOPS':>6} {'timm fp32 ms':>12} {'model/timm':>10} {'tracker/timm':>12} {'vs batch 1':>10}")
    lines += [header, "-" * len(header)]
    for row in result.rows:
        def num(value: float | None, width: int, digits: int = 1) -> str:
            return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"
        speedup = f"{row.batch_speedup:9.2f}x" if row.batch_speedup is not None else (
            f"{row.model_batch_speedup:9.2f}x" if row.model_batch_speedup is not None else f"{'-':>10}")
        lines.append(f"{row.backend[:52]:52} {row.batch:5d} {num(row.model_ms, 9)} {num(1e3 / row.model_ms, 9)} "
                     f"{num(row.tracker_ms, 10)} {num(1e3 / row.tracker_ms if row.tracker_ms else None, 11)} "
                     f"{num(row.model_tflops, 6, 2)} {num(row.timm_ms, 12)} {num(row.model_vs_timm, 10, 3)} "
                     f"{num(row.tracker_vs_timm, 12, 3)} {speedup}")
    lines.append("")
    lines.append("ms and fps are per frame (one sequence advanced by one frame; batched calls divided by the batch). "
                 "x/timm: median per-repeat ratio to the bare timm blocks in fp32 at the same batch size (< 1 is "
                 "faster). vs batch 1: tracker frames/s over those at the first batch size (same backend). "
                 "TFLOPS: the network's FLOPs per frame over its model time; near the matmul rate above, a larger "
                 "batch has little left to gain.")
    lines += result.notes
    return "\n".join(lines)


# ---- agreement with fp32 ----------------------------------------------------------------------------------------

@dataclass
class Agreement:
    """How far a tracker's boxes are from the fp32 tracker's on one sequence.

    ``step_px``: per frame, the largest coordinate difference (px) when both start the step from the fp32
    tracker's previous box (one step of numerical difference, no compounding). ``closed_iou``: per frame, the IoU
    of the two trackers' boxes when each runs on its own outputs (what a user sees)."""

    step_px: np.ndarray
    closed_iou: np.ndarray

    def summary(self) -> str:
        return (f"one-step max {self.step_px.max():.3f} px (p95 {np.percentile(self.step_px, 95):.3f}), "
                f"closed-loop IoU min {self.closed_iou.min():.3f} mean {self.closed_iou.mean():.4f}")


def compare_with_fp32(reference: Any, candidate: Any, frames: Sequence[np.ndarray], init_box: np.ndarray
                      ) -> Agreement:
    """Track ``frames`` with two engines (the fp32 ``reference`` and a ``candidate``) and measure their agreement."""
    init = np.asarray(init_box, dtype=np.float64)[None]
    ref = reference.initialize([frames[0]], init)
    forced = candidate.initialize([frames[0]], init)
    free = candidate.initialize([frames[0]], init)
    step_px, closed_iou = [], []
    for frame in frames[1:]:
        forced[0].search_box = ref[0].search_box.copy()  # same starting point as the fp32 tracker
        ref_box, _ = reference.track(ref, [frame])
        forced_box, _ = candidate.track(forced, [frame])
        free_box, _ = candidate.track(free, [frame])
        step_px.append(float(np.abs(ref_box[0] - forced_box[0]).max()))
        closed_iou.append(float(rect_iou(ref_box, free_box)[0]))
    return Agreement(np.array(step_px), np.array(closed_iou))


__all__ = ["Agreement", "BenchmarkResult", "Row", "compare_with_fp32", "describe_hardware",
           "format_result", "hardware_info", "median_ratio", "network_inputs", "run_benchmark", "synthetic_sequences",
           "time_interleaved", "timm_blocks"]
