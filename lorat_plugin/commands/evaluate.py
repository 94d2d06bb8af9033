"""Run LoRAT over a benchmark and write its result files: records, the benchmark's result layouts, and the server
zip for GOT-10k/TrackingNet test. Resumable (finished sequences are skipped); shard over processes or GPUs with
``torchrun --nproc-per-node N -m lorat_plugin.cli evaluate ...``. Then score it with ``lorat report OUTPUT``.

examples:
  lorat evaluate --dataset lasot --root /data/LaSOT --output runs/lasot-b224 --variant B-224 --weights-dir /w
  lorat evaluate --dataset got10k --split test --root /data/GOT-10k --output runs/got-test --checkpoint my.safetensors
  torchrun --nproc-per-node 4 -m lorat_plugin.cli evaluate --dataset lasot_ext --runs 3 --root ... --output ...
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import add_backend_arguments, add_model_arguments, positive_int

if TYPE_CHECKING:
    from ..evaluation import RunSummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.datasets import dataset_help, split_help

    parser.add_argument("--dataset", required=True, help=dataset_help(scored_only=True))
    parser.add_argument("--root", required=True, help="the benchmark's folder in its standard layout")
    parser.add_argument("--split", help=f"{split_help(scored_only=True)} (default first)")
    parser.add_argument("--output", required=True, help="evaluation folder (created; reused to resume)")
    parser.add_argument("--tracker-name", help="name in result files and reports (default: the model's identity, "
                                               "LoRAT-<variant, training run or checkpoint stem>-<weights hash>-"
                                               "<precision>)")
    parser.add_argument("--runs", type=int, default=1, help="runs per sequence (_001, _002, ...; default 1)")
    parser.add_argument("--repeats", type=int, dest="runs", help=argparse.SUPPRESS)  # old name
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="sequences tracked together (default: 1 on the CPU, where the network runs one sequence "
                             "per call and a batch buys no throughput; 8 on GPUs)")
    parser.add_argument("--sequence-names", nargs="+", metavar="NAME", help="only these sequences")
    parser.add_argument("--sequences", nargs="+", dest="sequence_names", help=argparse.SUPPRESS)  # old name
    parser.add_argument("--formats", nargs="+", choices=["got10k", "otb", "lasot", "pytracking", "trackingnet"],
                        help="result layouts to write (default: the benchmark's own, see docs/evaluation.md)")
    parser.add_argument("--decode-threads", type=int, default=4, help="threads decoding frames ahead (default 4)")
    add_model_arguments(parser)
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..data.datasets import dataset_key, load_dataset
    from ..distributed import local_device
    from ..engine import precision_name
    from ..evaluation import run_benchmark
    from ..model.sources import model_identity
    from .common import engine_from_args

    if args.runs < 1:  # checked here, before the dataset and the model load, in the words the user typed
        raise ValueError(f"--runs {args.runs}: give the number of runs per sequence, 1 or more")
    dataset = dataset_key(args.dataset)
    sequences = load_dataset(dataset, args.root, args.split)
    if args.sequence_names:
        wanted = set(args.sequence_names)
        unknown = wanted - {s.name for s in sequences}
        if unknown:
            raise ValueError(f"not in {dataset}: {', '.join(sorted(unknown))}")
        sequences = [s for s in sequences if s.name in wanted]
    device = args.device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: the GPU of this rank (or the CPU)
        device = str(local_device(device, key="--device"))
    engine, spec = engine_from_args(args, device)
    precision = precision_name(engine.dtype)
    # with --onnx there is no spec: the exported file is the weights
    model = model_identity(precision, spec=spec, exported=None if spec is not None else Path(args.onnx))
    backend = engine.network.description
    summary = run_benchmark(engine, sequences, Path(args.output), tracker_name=args.tracker_name or model["name"],
                            dataset=dataset, split=args.split, root=Path(args.root).resolve(), repeats=args.runs,
                            batch_size=args.batch_size, formats=args.formats, decode_threads=args.decode_threads,
                            progress=args.progress, model=model, backend=backend)
    if summary.rank != 0:
        return 0
    print_summary(summary)
    if summary.retracked:
        print(f"re-tracked {len(summary.retracked)} runs whose sequence changed: {', '.join(summary.retracked)}")
    for path in summary.outputs:
        print(f"  wrote {path}")
    if summary.failures:
        print(f"{len(summary.failures)} runs failed (run the same command again to retry only them):",
              file=sys.stderr)
        for run, error in summary.failures.items():
            print(f"  {run}: {error}", file=sys.stderr)
        return 1
    print(f"score it with: lorat report {args.output}")
    return 0


def print_summary(summary: "RunSummary") -> None:
    """What this call tracked, over every rank, and its speed: the figure `lorat report` shows for the same runs."""
    from ..environment import format_environment
    from ..evaluation.report import SPEED_NOTES

    processes = f" by {summary.world_size} processes" if summary.world_size > 1 else ""
    print(f"{summary.tracker_name}: {len(summary.completed)} runs tracked{processes}, {summary.skipped} already done")
    speed = summary.speed
    if speed is not None and speed.fps is not None:
        throughput = ""
        if speed.throughput is not None:
            per_process = " per process" if summary.world_size > 1 else ""
            throughput = f"; throughput at batch {speed.batch}: {speed.throughput:.1f} frames/s{per_process}"
        print(f"  FPS {speed.fps:.1f} frames/s per sequence{throughput}; warm-up left out: {speed.warmup_frames} "
              f"frames, {speed.warmup_seconds:.2f} s")
        print(f"  ({SPEED_NOTES['FPS']})")
    for environment in summary.environments:
        print(f"  ran on: {format_environment(environment)}")
