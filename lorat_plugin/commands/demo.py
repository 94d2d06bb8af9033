"""Run the shipped demo model over the shipped procedural benchmark, beside OpenCV's CSRT and KCF and a static box.

  lorat demo                               # everything into ./lorat-demo
  lorat demo --output /tmp/demo --baselines csrt
  lorat demo --checkpoint runs/demo/model.safetensors     # another model, same benchmark and baselines
  lorat demo --seed 7 --output lorat-demo-seed7            # new sequences of the test photographs

Writes OUT/benchmark/ (the test split in the GOT-10k layout, generated in seconds), OUT/results/<tracker>/,
OUT/report/ (metrics.json, table, plots, report.html; report/ope/: OPE plots) and OUT/video/<sequence>.mp4, and
prints the metrics table. Re-running reuses what is complete. See docs/demo.md.

Maintainers: --init-backbone FILE writes stage 0 of the demo recipe; --package-model CKPT stores a model trained
with configs/demo.yaml as lorat_plugin/assets/demo_model.safetensors.
"""
from __future__ import annotations

import argparse

from .common import add_model_arguments, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="lorat-demo", metavar="DIR", help="output folder (default: lorat-demo)")
    parser.add_argument("--baselines", default="csrt,kcf,static", metavar="LIST",
                        help="comma-separated baselines run beside LoRAT: csrt, kcf, static, or none (default: all)")
    parser.add_argument("--no-video", action="store_true", help="do not render the sequence video")
    parser.add_argument("--video-sequence", metavar="NAME", help="sequence to render (default: the documented one)")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="sequences each tracker advances per call (default: LoRAT's engine's choice, 1 on the "
                             "CPU and 8 on GPUs)")
    parser.add_argument("--seed", type=int, metavar="S",
                        help="generate another test split with this seed (same test photographs, new sequences: "
                             "a generalisation check)")
    parser.add_argument("--sequences", type=int, metavar="N", help="with --seed: number of sequences (default 16)")
    parser.add_argument("--frames", type=int, metavar="N", help="with --seed: frames per sequence (default 100)")
    parser.add_argument("--package-model", metavar="CKPT",
                        help="maintainers: store CKPT (trained with configs/demo.yaml) as the shipped demo model")
    parser.add_argument("--init-backbone", metavar="FILE",
                        help="maintainers: write the initial backbone of configs/demo-pretrain.yaml to FILE")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import time

    from ..demo import DEMO_TRACKER, package_demo_model, run_demo, write_initial_backbone
    from ..model.sources import ModelSpec
    from ..train.config import resolve_config_path

    if args.init_backbone:
        path = write_initial_backbone(resolve_config_path("demo-pretrain"), args.init_backbone)
        print(f"initial backbone written: {path}")
        return 0
    if args.package_model:
        path = package_demo_model(args.package_model)
        print(f"demo model written: {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    baselines = tuple(b.strip().lower() for b in args.baselines.split(",") if b.strip() and b.strip() != "none")
    started = time.perf_counter()
    spec = ModelSpec.from_args(args)
    result = run_demo(args.output, spec.load(), tracker_name=DEMO_TRACKER if spec.is_demo else "LoRAT",
                      baselines=baselines, video=not args.no_video, video_sequence=args.video_sequence,
                      batch_size=args.batch_size, device=spec.device, dtype=spec.dtype, progress=args.progress,
                      identity=spec.identity,
                      benchmark={"seed": args.seed, "sequences": args.sequences, "frames": args.frames})
    print(f"\n{result.table}\n\nresults: {result.output / 'results'}\nreports and plots: {result.output / 'report'}")
    if result.video is not None:
        print(f"video: {result.video}")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0
