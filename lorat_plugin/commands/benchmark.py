"""Measure LoRAT frames per second on this machine: the network alone and the whole tracker step (crop, network,
post-processing, from already-decoded frames), at batch 1 and batched across sequences, on the current device and
precision, with the hardware named. ``--compare`` times other backends in the same interleaved run and prints each
one's speed-up over the device's default precision (see COMPARISONS below, or --help). The model is the one the model
arguments (or LORAT_* variables) name, the shipped demo model when none is; a --variant without weights is randomly
initialised (speed does not depend on the weights; the output says so).

examples:
  lorat benchmark --variant B-224 --compare timm
  lorat benchmark --variant B-224 --compare timm,fp32,onnx=b224.onnx --batch-sizes 1,8 --repeats 9
  lorat benchmark --variant B-224 --compare timm,unfused,batched --batch-sizes 1,8
  lorat benchmark --variant B-224 --dtype int8 --compare bf16,fp32 --model-only --batch-sizes 1
  lorat benchmark --variant B-224 --compare openvino --model-only --batch-sizes 1
  lorat benchmark --variant L-224 --device cuda --batch-sizes 1,32 --cuda-graphs
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from .common import add_backend_arguments, add_model_arguments, backend_flags, frame_size, set_threads


@dataclass(frozen=True)
class Comparison:
    """One entry of ``--compare``: what it times beside the main backend. ``build(model, device, main, value)``
    returns the backend to time in the interleaved run, or ``None`` when it would time the main backend again;
    ``apart(model, main, value, args, resources)`` instead times another runtime in a process of its own after
    that run and returns the lines it prints and a backend for the agreement with fp32 (``resources``: an
    ``ExitStack`` closed at the end of the command, for its process and files); ``value`` is the text after
    ``=``."""

    help: str
    build: Callable[[Any, Any, Any, str | None], Any] | None = None  # neither: not a network (the timm yardstick)
    value: Literal["none", "required", "optional"] = "none"
    apart: Callable[[Any, Any, str | None, argparse.Namespace, contextlib.ExitStack], tuple[str, Any]] | None = None


def _precision(name: str) -> Callable[[Any, Any, Any, str | None], Any]:
    def build(model: Any, device: Any, main: Any, value: str | None) -> Any:
        from ..engine import build_network, precision_name

        return None if precision_name(main.dtype) == name else build_network(model, device, name)
    return build


def _autocast(model: Any, device: Any, main: Any, value: str | None) -> Any:
    from ..engine import build_network

    return build_network(model, device, main.dtype, autocast=True)


def _unfused(model: Any, device: Any, main: Any, value: str | None) -> Any:
    from ..engine import build_network

    network = build_network(model, device, "bf16", fused=False)
    return None if network.description == main.description else network


def _batched(model: Any, device: Any, main: Any, value: str | None) -> Any:
    from ..engine import build_network

    network = build_network(model, device, main.dtype, per_sequence=False)
    return None if network.description == main.description else network


def _onnx(model: Any, device: Any, main: Any, value: str | None) -> Any:
    from ..engine.onnx import OnnxNetwork

    network = OnnxNetwork(value)
    if network.config != model.config:
        raise ValueError(f"{value} was exported for another model than the one benchmarked ({network.config.embed_dim}"
                         f" wide, {network.config.depth} deep): pass the same --variant")
    return network


def _openvino(model: Any, main: Any, value: str | None, args: argparse.Namespace, resources: contextlib.ExitStack
              ) -> tuple[str, Any]:
    """OpenVINO on ``value`` (an ONNX file of the same model) or on the network exported here, timed in its own
    process against ``main`` (:mod:`lorat_plugin.speed.openvino_comparison`)."""
    import torch

    from ..engine.precision import cpu_has_native_bf16
    from ..speed.openvino_comparison import (OpenVinoProcess, compare_openvino, format_openvino, openvino_precision,
                                             require_openvino)

    if main.device.type != "cpu":
        raise ValueError("--compare openvino times OpenVINO's CPU runtime: benchmark on --device cpu")
    require_openvino()  # before the export
    if value is None:
        from ..engine.onnx import export_onnx

        files = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="lorat-openvino-")))
        path = export_onnx(model, files / "network.onnx")
    else:
        path = Path(value)
        _check_exported_config(path, model)
    process = OpenVinoProcess(path, threads=torch.get_num_threads(),
                              precision=openvino_precision(main.dtype, cpu_has_native_bf16()))
    resources.callback(process.close)  # up until the tracker agreement is done
    reference = None if main.dtype == torch.float32 else model.eval()  # the fp32 model, for the output differences
    result, backend = compare_openvino(main, process, lambda batch: model.get_sample_data(batch, "cpu"),
                                       batch_sizes=_ints(args.batch_sizes, "--batch-sizes"), rounds=args.repeats,
                                       warmup=args.warmup, reference=reference)
    return format_openvino(result), backend


def _check_exported_config(path: Path, model: Any) -> None:
    import onnx

    from ..engine.onnx import exported_config

    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    metadata = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    if exported_config(metadata, path) != model.config:
        raise ValueError(f"{path} was exported for another model than the one benchmarked: pass the same --variant")


# A new comparison is one row here.
COMPARISONS: dict[str, Comparison] = {
    "timm": Comparison("the bare timm ViT blocks (fp32) over the same tokens: the yardstick, with ratios"),
    "fp32": Comparison("the fp32 network (and every other backend's agreement with it)", _precision("fp32")),
    "bf16": Comparison("the bf16 network", _precision("bf16")),
    "fp16": Comparison("the fp16 network", _precision("fp16")),
    "int8": Comparison("the int8 network (CPU)", _precision("int8")),
    "autocast": Comparison("the reference's AMP (autocast around fp32 weights) at the same precision", _autocast),
    "unfused": Comparison("stored-bf16 blocks on eager PyTorch kernels (without oneDNN fusion)", _unfused),
    "batched": Comparison("the same backend with one network call for the whole batch (faster, but a sequence's "
                          "boxes then depend on the batch: docs/speed.md, 'Batch invariance')", _batched),
    "onnx": Comparison("an exported file with ONNX Runtime (CPU): onnx=FILE", _onnx, value="required"),
    "openvino": Comparison("OpenVINO (CPU) on the network exported here, or on openvino=FILE.onnx, in a process of "
                           "its own alternated with ours, at its best of the LATENCY and THROUGHPUT hints",
                           value="optional", apart=_openvino),
}


def parse_compare(text: str) -> list[tuple[str, str | None]]:
    """``--compare`` as (entry, value) pairs: comma-separated names of :data:`COMPARISONS`, ``onnx=FILE``,
    ``openvino`` or ``openvino=FILE``."""
    entries = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, value = item.partition("=")
        comparison = COMPARISONS.get(name)
        if comparison is None:
            raise argparse.ArgumentTypeError(f"unknown comparison {name!r}: use {', '.join(COMPARISONS)}")
        if comparison.value == "required" and not value:
            raise argparse.ArgumentTypeError(f"{name} needs a value ({name}=...)")
        if comparison.value == "none" and value:
            raise argparse.ArgumentTypeError(f"{name} takes no value")
        entries.append((name, value or None))
    return entries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement; medians (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--compare", type=parse_compare, default=[], metavar="A,B,...",
                        help="also time, in the same interleaved run: "
                             + "; ".join(f"{name}: {c.help}" for name, c in COMPARISONS.items()))
    parser.add_argument("--model-only", action="store_true", help="skip the tracker-step measurement")
    parser.add_argument("--frame-size", type=frame_size, default=(640, 480), metavar="WxH",
                        help="size of the synthetic decoded frames the tracker step crops from (default 640x480)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_model_arguments(parser)
    add_backend_arguments(parser)


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"{what}: expected positive integers separated by ',', got {text!r}")
    return values


def _yardstick_dtype(dtype: torch.dtype) -> torch.dtype:
    """The matrix product to read the network's TFLOPS against: its own precision, and for int8 that of the rest of
    its network (``int8_compute_dtype``). A 2048-cubed bf16 product on a CPU without native bf16 is emulated: minutes,
    and nothing the int8 network runs there."""
    from ..engine.backends import int8_compute_dtype

    return dtype if dtype.is_floating_point else int8_compute_dtype()


def run(args: argparse.Namespace) -> int:
    import torch

    from ..devices import parse_device
    from ..engine import TrackingEngine, default_precision
    from ..model.sources import ModelSpec
    from ..speed import format_speed_report, measure_speed, network_flops
    from .common import engine_from_args

    batch_sizes = _ints(args.batch_sizes, "--batch-sizes")
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0")
    set_threads(args)
    if args.onnx:  # the exported file is the main backend: a random model of its shape gives the example inputs
        from ..model import build_model

        main = engine_from_args(args)[0].network
        model, weights = build_model(main.config, merge=True).eval(), f"exported file {args.onnx}"
        variant = "exported"
        needs_model = [name for name, value in args.compare
                       if name not in ("timm", "onnx") and not (name == "openvino" and value)]
        if needs_model:
            raise ValueError(f"--onnx times the exported file; --compare {','.join(needs_model)} needs the PyTorch "
                             "model: give its --variant/--checkpoint and --compare onnx=FILE instead")
    else:
        spec = ModelSpec.from_args(args, random_weights=True)  # a bare --variant: random weights (speed only)
        model = spec.load()
        weights = ("weights: " + spec.describe()) if spec.files else "random weights: timing only, not meaningful boxes"
        variant = spec.variant or "from the weights"
        main = TrackingEngine(model, device=spec.device, dtype=spec.dtype, **backend_flags(args)).network
    device = parse_device(main.device)
    backends = {main.description: main}
    fp32 = None
    for name, value in args.compare:
        build = COMPARISONS[name].build
        network = build(model, device, main, value) if build is not None else None
        if network is not None:
            backends.setdefault(network.description, network)
            fp32 = network if name == "fp32" else fp32
    fp32 = fp32 or (main if main.dtype == torch.float32 and any(n == "fp32" for n, _ in args.compare) else None)
    default = default_precision(device)  # speed-ups are over the default when it is among the timed backends
    baseline = next((name for name, network in backends.items() if network.dtype == default
                     and "one call per sequence" in network.description), None) or next(
        (name for name, network in backends.items() if network.dtype == default), None)
    with contextlib.ExitStack() as resources:
        result = measure_speed(backends, model, device=device, variant=variant, weights=weights,
                               batch_sizes=batch_sizes, repeats=args.repeats, warmup=args.warmup,
                               compare_timm=any(name == "timm" for name, _ in args.compare),
                               tracker=not args.model_only, frame_size=args.frame_size,
                               flops_per_frame=network_flops(model),
                               matmul_dtype=_yardstick_dtype(main.dtype),
                               baseline=baseline if len(backends) > 1 else None)
        agreeing = dict(backends)  # and the runtimes timed apart
        for name, value in args.compare:
            apart = COMPARISONS[name].apart
            if apart is not None:
                text, network = apart(model, main, value, args, resources)
                result.notes += ["", text]
                agreeing.setdefault(network.description, network)
        print(format_speed_report(result))
        if fp32 is not None and len(agreeing) > 1:
            from ..data.synthetic import moving_box_video
            from ..speed import compare_with_fp32

            frames, truth = moving_box_video(20, args.frame_size)
            print("agreement with fp32 on a synthetic sequence (20 frames; one step: from the fp32 tracker's box):")
            for name, network in agreeing.items():
                if network is not fp32:
                    agreement = compare_with_fp32(TrackingEngine(fp32), TrackingEngine(network), frames, truth[0])
                    print(f"  {name}: {agreement.summary()}")
    if args.json:
        Path(args.json).write_text(json.dumps(dataclasses.asdict(result), indent=1), encoding="utf-8")
    return 0
