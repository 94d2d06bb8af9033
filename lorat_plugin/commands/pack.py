"""Build a server submission zip: GOT-10k (``<seq>/<seq>_001.txt`` + ``<seq>_time.txt``) or TrackingNet
(``<seq>.txt`` at the zip root). RESULTS is a ``lorat evaluate`` folder or a tracker folder in the got10k
(GOT-10k) or flat (TrackingNet) layout. With --root the zip is checked to cover every test sequence.

examples:
  lorat pack --format got10k runs/got-test -o LoRAT-B-224_got10k.zip --root /data/GOT-10k
  lorat pack --format trackingnet runs/trackingnet -o submission.zip
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=["got10k", "trackingnet"], help="which server")
    parser.add_argument("results", help="evaluation folder or tracker results folder")
    parser.add_argument("-o", "--output", required=True, help="zip file to write")
    parser.add_argument("--root", help="benchmark folder: check that every test sequence has results")
    parser.add_argument("--run", type=int, default=1,
                        help="TrackingNet: which run of a repeated evaluation (default 1)")


def run(args: argparse.Namespace) -> int:
    from ..data.datasets import load_dataset
    from ..evaluation import export_results, pack_got10k, pack_trackingnet
    from ..evaluation.formats import format_dir, run_folder, safe_name
    from ..evaluation.records import load_records, read_run_info

    results = Path(args.results)
    if not results.is_dir():
        raise FileNotFoundError(f"results folder not found: {results}")
    expected = [s.name for s in load_dataset(args.format, args.root, "test")] if args.root else None
    info = read_run_info(results)
    folder = results
    if info is not None:  # an evaluation folder: (re)write the layout from its records, then zip it
        tracker = safe_name(info["tracker"])
        export_results(results, formats=[args.format], dataset=info.get("dataset") or args.format)
        if args.format == "got10k":
            folder = results / format_dir("got10k", "got10k") / tracker
        else:
            runs = max(max(r) for r in load_records(results).values())
            folder = results / "trackingnet" / run_folder(tracker, args.run, runs)
    pack = pack_got10k if args.format == "got10k" else pack_trackingnet
    path = pack(folder, Path(args.output), expected)
    print(f"wrote {path} from {folder}")
    return 0
