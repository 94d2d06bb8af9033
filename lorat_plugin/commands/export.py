"""Export the merged LoRAT network to ONNX, then check it: ONNX Runtime (CPU) must reproduce PyTorch on the same
inputs within the stated tolerance (docs/speed.md). The file carries the model config, so `lorat track --onnx FILE`
and `lorat evaluate --onnx FILE` can track with it.

examples:
  lorat export --variant B-224 --weights-dir ~/weights -o lorat-b224.onnx
  lorat export --checkpoint my.safetensors -o my.onnx --dtype fp16 --batch-size 8   # GPU runtimes, fixed batch
  lorat export --variant B-224 --weights-dir ~/weights -o b224-int8.onnx --dtype int8  # CPU deployment
"""
from __future__ import annotations

import argparse

from .common import add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--batch-size", type=int,
                        help="fixed batch size (default: a dynamic batch dimension; crop sizes are always static)")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime check against PyTorch")
    parser.add_argument("--random-weights", action="store_true",
                        help="export --variant with random weights (for speed tests; boxes are meaningless)")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import time

    from ..engine.onnx import TOLERANCE, check_onnx, export_onnx
    from ..model import build_model
    from .common import model_from_args

    dtype = args.dtype or "fp32"
    if dtype not in TOLERANCE:
        raise ValueError(f"--dtype {dtype}: ONNX export writes fp32, fp16 or int8 files")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    if args.random_weights:
        if not args.variant or args.checkpoint or args.backbone_weights or args.weights_dir:
            raise ValueError("--random-weights needs --variant and no weight files")
        model = build_model(args.variant, merge=True)
    else:
        model = model_from_args(args)
    started = time.perf_counter()
    path = export_onnx(model, args.output, dtype=dtype, opset=args.opset, batch_size=args.batch_size)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB, {dtype}, opset {args.opset}, batch "
          f"{args.batch_size or 'dynamic'}) in {time.perf_counter() - started:.0f} s")
    if not args.no_check:
        diffs = check_onnx(path, model)
        score_tol, box_tol = TOLERANCE[dtype]
        score_tol = f"{score_tol:g}" + (" of the largest, vs fp32" if dtype == "int8" else "")
        print(f"ONNX Runtime CPU vs PyTorch: score logits max |diff| {diffs['score_map']:.2e} (allowed {score_tol}), "
              f"boxes {diffs['boxes']:.2e} (allowed {box_tol:g}, normalised crop units)")
    return 0
