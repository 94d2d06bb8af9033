"""Generate a tracking benchmark from real photographs (scikit-image's bundled images), with exact ground truth.

  lorat make-benchmark bench --split test --sequences 16 --frames 100 --size 320x240 --seed 0
  lorat make-benchmark data/demo-train --split train --sequences 300 --seed 1          # a training set
  lorat make-benchmark bench-lasot --split test --layout lasot
  lorat make-benchmark bench-vot --layout vot --sequences 4 --frames 150   # for `lorat vot-workspace`

A target cut from one photograph moves over another with smooth and abrupt motion, scale and aspect change,
occlusion, out-of-view stretches, look-alike distractors, blur and illumination change. The train and test splits
use different photographs. GOT-10k layout: OUT/train/ (train split) or OUT/val/ (test split, fully annotated:
got10k's ExperimentGOT10k(OUT, subset="val") scores it); LaSOT layout: OUT/<photo>/<photo>-<k>/ plus
OUT/{training,testing}_set.txt; VOT layout: OUT/<name>/ (the toolkit's sequence folders, with anchor.value) plus
OUT/list.txt.
Re-running the same command completes an interrupted run. See docs/demo.md.
"""
from __future__ import annotations

import argparse

from .common import frame_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUT", nargs="?",
                        help="dataset root to write (created; completed if interrupted)")
    parser.add_argument("--split", choices=("train", "test"), default="test",
                        help="which photographs to use: the train and test splits share none (default: test)")
    parser.add_argument("--sequences", type=int, default=16, metavar="N", help="number of sequences (default: 16)")
    parser.add_argument("--frames", type=int, default=100, metavar="N", help="frames per sequence (default: 100)")
    parser.add_argument("--size", type=frame_size, default=(320, 240), metavar="WxH",
                        help="frame size (default: 320x240)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same benchmark (default: 0)")
    parser.add_argument("--layout", choices=("got10k", "lasot", "vot"), default="got10k",
                        help="folder layout (default: got10k); vot: the VOT toolkit's sequences, with anchors for "
                             "the multistart stacks (`lorat vot-workspace WS --sequences-dir OUT`)")
    parser.add_argument("--photos", metavar="A,B,...",
                        help="use only these photographs of the split's (default: all of the split's; "
                             "`lorat make-benchmark --list-photos` lists them)")
    parser.add_argument("--textures", type=int, default=0, metavar="N",
                        help="train split only: add N synthetic textures (dead leaves, fractal noise, gratings) to "
                             "the photographs; half of all picks are then textures (default: 0)")
    parser.add_argument("--list-photos", action="store_true", help="list the photographs of each split and exit")


def run(args: argparse.Namespace) -> int:
    import time

    from ..demo.procedural import PHOTOGRAPHS, make_benchmark

    if args.list_photos:
        for name, photo in PHOTOGRAPHS.items():
            print(f"{photo.split:<6} {name:<11} skimage.data.{photo.loader}(): {photo.description}")
        print("train  texture-NNN synthetic textures (--textures N: texture-000 ... texture-N-1)")
        return 0
    if not args.output:
        raise ValueError("name the folder to write (OUT)")
    photos = tuple(p.strip() for p in args.photos.split(",") if p.strip()) if args.photos else None
    started = time.perf_counter()

    def progress(done: int, total: int, name: str) -> None:
        print(f"\r{done}/{total} sequences ({name})", end="" if done < total else "\n", flush=True)

    bench = make_benchmark(args.output, split=args.split, sequences=args.sequences, frames=args.frames,
                           size=args.size, seed=args.seed, layout=args.layout, photographs=photos,
                           textures=args.textures, progress=progress if args.progress else None)
    elapsed = time.perf_counter() - started
    if args.layout == "vot":
        print(f"wrote {len(bench.names)} VOT sequences to {bench.root} in {elapsed:.1f} s; evaluate a tracker on "
              f"them with `lorat vot-workspace WS --stack vot2022/shorttermbox --sequences-dir {bench.root}`, then "
              "`vot evaluate --workspace WS lorat` (docs/vot.md)")
        return 0
    print(f"wrote {len(bench.names)} sequences to {bench.root} in {elapsed:.1f} s; read them "
          f"with load_dataset('procedural', {str(bench.root)!r}, split={args.split!r}) or "
          f"load_dataset({bench.layout!r}, {str(bench.root)!r}, split={bench.subset!r}); score a tracker on them "
          f"with `lorat evaluate --dataset procedural --root {bench.root} --split {args.split} ...`")
    return 0
