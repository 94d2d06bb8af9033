"""Build a server submission zip: GOT-10k (``<seq>/<seq>_001.txt`` + ``<seq>_time.txt``) or TrackingNet
(``<seq>.txt`` at the zip root). RESULTS is a ``lorat evaluate`` folder or a tracker folder in the got10k
(GOT-10k) or flat (TrackingNet) layout. Every sequence of an evaluation folder goes into the zip (a sequence without
results is an error naming it); with --root, every test sequence of the benchmark as well. The zip is read back and
checked before it is reported written.

examples:
  lorat pack --format got10k runs/got-test -o LoRAT-B-224_got10k.zip --root /data/GOT-10k
  lorat pack --format trackingnet runs/trackingnet -o submission.zip
"""
from __future__ import annotations

import argparse
import zipfile
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
    from ..evaluation.formats import check_zip, format_dir, run_folder, safe_name
    from ..evaluation.records import load_records, read_run_info

    results = Path(args.results)
    if not results.is_dir():
        raise FileNotFoundError(f"results folder not found: {results}")
    expected = [s.name for s in load_dataset(args.format, args.root, "test")] if args.root else None
    info = read_run_info(results)
    folder = results
    if info is not None:  # an evaluation folder: (re)write the layout from its records, then zip it
        in_run = [name for name in info.get("sequences", []) if name not in set(expected or [])]
        expected = (expected or []) + in_run or None
        tracker = safe_name(info["tracker"])
        export_results(results, formats=[args.format], dataset=info.get("dataset") or args.format)
        if args.format == "got10k":
            folder = results / format_dir("got10k", "got10k") / tracker
        else:
            runs = max(max(r) for r in load_records(results).values())
            folder = results / "trackingnet" / run_folder(tracker, args.run, runs)
    pack = pack_got10k if args.format == "got10k" else pack_trackingnet
    path = pack(folder, Path(args.output), expected)
    try:
        check_zip(path, args.format, expected or _sequences_in(folder, args.format))
    except (ValueError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)  # an incomplete submission must not be mistaken for one
        raise
    print(f"wrote {path} from {folder}")
    return 0


def _sequences_in(folder: Path, fmt: str) -> list[str]:
    """Without a run or --root, the sequences are what the folder holds: every sub-folder (GOT-10k) or box file."""
    if fmt == "got10k":
        return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    return sorted(p.stem for p in folder.iterdir() if p.suffix == ".txt" and not p.name.endswith("_time.txt"))
