"""Measure LoRAT frames per second on this machine: the network alone and the whole tracker step (crop, network,
post-processing, from already-decoded frames), at batch 1 and batched across sequences, on the current device and
precision, with the hardware named. --compare-timm times the bare timm ViT blocks of the same size over the same
tokens in fp32 in the same run, as the yardstick. The model is the one the model arguments (or LORAT_* variables)
name, the shipped demo model when none is; a --variant without weights is randomly initialised (speed does not
depend on the weights; the output says so).

examples:
  lorat benchmark --variant B-224 --compare-timm
  lorat benchmark --variant B-224 --compare-timm --compare-fp32 --onnx b224.onnx --batch-sizes 1,8 --repeats 9
  lorat benchmark --variant B-224 --compare-timm --compare-unfused --batch-sizes 1,8
  lorat benchmark --variant B-224 --dtype int8 --compare-bf16 --compare-fp32 --model-only --batch-sizes 1
  lorat benchmark --variant L-224 --device cuda --batch-sizes 1,32 --cuda-graphs
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .common import add_model_arguments, frame_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement; medians (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--compare-timm", action="store_true",
                        help="also time the bare timm ViT blocks (fp32) over the same tokens and print ratios")
    parser.add_argument("--compare-fp32", action="store_true",
                        help="also time the fp32 network, and print each other backend's agreement with it")
    parser.add_argument("--compare-bf16", action="store_true",
                        help="also time the bf16 network (e.g. with --dtype int8)")
    parser.add_argument("--compare-autocast", action="store_true",
                        help="also time the reference's AMP (autocast around fp32 weights) at the same precision")
    parser.add_argument("--compare-unfused", action="store_true",
                        help="also time the stored-bf16 blocks as eager PyTorch kernels (without oneDNN fusion)")
    parser.add_argument("--onnx", metavar="FILE", help="also time this exported network with ONNX Runtime (CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (slow to start)")
    parser.add_argument("--cuda-graphs", action="store_true", help="capture CUDA graphs (CUDA only)")
    parser.add_argument("--model-only", action="store_true", help="skip the tracker-step measurement")
    parser.add_argument("--frame-size", type=frame_size, default=(640, 480), metavar="WxH",
                        help="size of the synthetic decoded frames the tracker step crops from (default 640x480)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_model_arguments(parser)


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"{what}: expected positive integers separated by ',', got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    import torch

    from ..engine.accelerate import CastNetwork, build_network, describe_network
    from ..engine.precision import default_precision, resolve_device
    from ..model.sources import ModelSpec
    from ..speed import format_speed_report, measure_speed, network_flops

    batch_sizes = _ints(args.batch_sizes, "--batch-sizes")
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = ModelSpec.from_args(args, random_weights=True)  # a bare --variant: random weights (speed only)
    model = spec.load()
    weights = ("weights: " + spec.describe()) if spec.files else "random weights: timing only, not meaningful boxes"
    device = resolve_device(spec.device)
    main = build_network(model, device, spec.dtype, compile=args.compile, cuda_graphs=args.cuda_graphs)
    fp32 = build_network(model, device, "fp32") if args.compare_fp32 and main.dtype != torch.float32 else None
    compared = [main, fp32,
                build_network(model, device, "bf16") if args.compare_bf16 and main.dtype != torch.bfloat16 else None,
                build_network(model, device, main.dtype, autocast=True)
                if args.compare_autocast and main.dtype != torch.float32 else None,
                CastNetwork(model, device, main.dtype, onednn=False)
                if args.compare_unfused and getattr(main, "onednn", False) else None]
    backends = {describe_network(network): network for network in compared if network is not None}
    default = default_precision(device)  # speed-ups are over the default when it is among the timed backends
    baseline = next((name for name, network in backends.items() if network.dtype == default), None)
    if args.onnx:
        from ..engine.onnx import OnnxNetwork

        ort = OnnxNetwork(args.onnx)
        if ort.config != model.config:
            raise ValueError(f"{args.onnx} was exported for another model than the one benchmarked "
                             f"({ort.config.embed_dim} wide, {ort.config.depth} deep): pass the same --variant")
        backends[f"ONNX Runtime CPU, {ort.precision} ({Path(args.onnx).name})"] = ort
    result = measure_speed(backends, model, device=device, variant=spec.variant or "from the weights", weights=weights,
                           batch_sizes=batch_sizes, repeats=args.repeats, warmup=args.warmup,
                           compare_timm=args.compare_timm, tracker=not args.model_only,
                           frame_size=args.frame_size, flops_per_frame=network_flops(model),
                           matmul_dtype=main.dtype if main.dtype.is_floating_point else torch.bfloat16,
                           baseline=baseline if len(backends) > 1 else None)
    print(format_speed_report(result))
    if fp32 is not None:
        from ..engine import TrackingEngine
        from ..data.synthetic import moving_box_video
        from ..speed import compare_with_fp32

        frames, truth = moving_box_video(20, args.frame_size)
        print("agreement with fp32 on a synthetic sequence (20 frames; one step: from the fp32 tracker's box):")
        for name, network in backends.items():
            if network is not fp32:
                agreement = compare_with_fp32(TrackingEngine(fp32), TrackingEngine(network), frames, truth[0])
                print(f"  {name}: {agreement.summary()}")
    if args.json:
        Path(args.json).write_text(json.dumps(dataclasses.asdict(result), indent=1), encoding="utf-8")
    return 0
