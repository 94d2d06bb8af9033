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

from .common import add_backend_arguments, add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True,
                        help="got10k, lasot, lasot_ext, trackingnet, otb, uav123, nfs, tnl2k")
    parser.add_argument("--root", required=True, help="the benchmark's folder in its standard layout")
    parser.add_argument("--split", help="got10k: train|val|test; trackingnet: test|TRAIN_<k>; lasot: test|train|all; "
                                        "otb: otb100|otb2013|tb50; uav123: UAV123|UAV20L; nfs: 30|240")
    parser.add_argument("--output", required=True, help="evaluation folder (created; reused to resume)")
    parser.add_argument("--tracker-name", help="name in result files and reports (default: the model's identity, "
                                               "LoRAT-<variant or checkpoint stem>-<weights hash>-<precision>)")
    parser.add_argument("--runs", type=int, default=1, help="runs per sequence (_001, _002, ...; default 1)")
    parser.add_argument("--repeats", type=int, dest="runs", help=argparse.SUPPRESS)  # old name
    parser.add_argument("--batch-size", type=int, default=8, help="sequences tracked together (default 8)")
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
    from ..model.sources import file_digest, make_identity
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
    if spec is not None:
        model = spec.identity(precision)
    else:  # --onnx: the exported file is the weights
        onnx = Path(args.onnx)
        model = make_identity(onnx.stem, None, file_digest(onnx)[:12], [onnx.name], precision)
    backend = engine.network.description
    summary = run_benchmark(engine, sequences, Path(args.output), tracker_name=args.tracker_name or model["name"],
                            dataset=dataset, split=args.split, root=Path(args.root).resolve(), repeats=args.runs,
                            batch_size=args.batch_size, formats=args.formats, decode_threads=args.decode_threads,
                            progress=args.progress, model=model, backend=backend)
    if summary.rank != 0:
        return 0
    print(f"{summary.tracker_name}: {len(summary.completed)} runs tracked here, {summary.skipped} already done"
          + (f", {summary.fps:.1f} frames/s in the tracker" if summary.frames else ""))
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

