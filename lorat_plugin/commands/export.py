"""Export the merged LoRAT network to ONNX, then check it: ONNX Runtime (CPU) must reproduce PyTorch on the same
inputs within the stated tolerance (docs/speed.md). The file appears only when the check passes; a failed check
writes nothing and exits with status 1. The file carries the model config, so `lorat track --onnx FILE` and
`lorat evaluate --onnx FILE` can track with it.

examples:
  lorat export demo.onnx                                   # the shipped demo model
  lorat export --variant B-224 --weights-dir ~/weights -o lorat-b224.onnx
  lorat export --checkpoint my.safetensors -o my.onnx --dtype fp16 --batch-size 8   # GPU runtimes, fixed batch
  lorat export --variant B-224 --weights-dir ~/weights -o b224-int8.onnx --dtype int8  # CPU deployment
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", nargs="?", metavar="FILE", help="the .onnx file to write (or -o FILE)")
    parser.add_argument("-o", "--output", dest="output_option", metavar="FILE", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--batch-size", type=int,
                        help="fixed batch size (default: a dynamic batch dimension; crop sizes are always static)")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime check against PyTorch")
    parser.add_argument("--random-weights", action="store_true",
                        help="export --variant with random weights (for speed tests; boxes are meaningless)")
    add_model_arguments(parser)


def output_path(args: argparse.Namespace) -> str:
    """The file named positionally or with -o (one of them, or both the same)."""
    named = {name for name in (args.output, args.output_option) if name}
    if not named:
        raise ValueError("name the .onnx file to write: lorat export FILE (or -o FILE)")
    if len(named) > 1:
        raise ValueError(f"two output files named ({args.output} and -o {args.output_option}): give one")
    return named.pop()


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from ..engine.onnx import TOLERANCE, OnnxExportError, check_onnx, export_onnx
    from ..files import atomic_path
    from ..model import build_model
    from .common import model_from_args

    output = output_path(args)
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
    try:
        # The file is checked under a temporary name and renamed into place only if it passes: a failed check
        # leaves nothing that `lorat track --onnx` could pick up.
        with atomic_path(output) as candidate:
            export_onnx(model, candidate, dtype=dtype, opset=args.opset, batch_size=args.batch_size)
            diffs = None if args.no_check else check_onnx(candidate, model)
    except OnnxExportError as e:
        print(f"lorat export: error: {output} not written: {e}", file=sys.stderr)
        return 1
    size_mib = Path(output).stat().st_size / 2**20
    print(f"wrote {output} ({size_mib:.0f} MiB, {dtype}, opset {args.opset}, batch {args.batch_size or 'dynamic'}) "
          f"in {time.perf_counter() - started:.0f} s")
    if diffs is not None:
        against = "PyTorch fp32" if dtype == "int8" else f"PyTorch {dtype}"
        print(f"ONNX Runtime CPU vs {against}: score logits max |diff| {diffs['score_map']:.2e} (allowed "
              f"{diffs['score_map_allowed']:.2e}), boxes {diffs['boxes']:.2e} (allowed {diffs['boxes_allowed']:.2e}, "
              "normalised crop units)")
        if dtype == "int8":
            print("  int8 allows the tolerance in docs/speed.md or twice PyTorch's own int8 difference from fp32 on "
                  "the same inputs, whichever is larger")
    return 0
