"""Build a server submission zip: GOT-10k (``<seq>/<seq>_001.txt`` + ``<seq>_time.txt``) or TrackingNet
(``<seq>.txt`` at the zip root). RESULTS is a ``lorat evaluate`` folder or a tracker folder in the got10k
(GOT-10k) or flat (TrackingNet) layout. Every sequence of an evaluation folder goes into the zip (a sequence without
results is an error naming it); with --root, every test sequence of the benchmark as well. The zip is read back and
checked before it is reported written. The servers score their test split only: an evaluation folder of another
split (val, train) or of another benchmark is refused. Only the zip is written: the server's layout is built in a
temporary folder (--keep-layout writes it into the evaluation folder as well).

examples:
  lorat pack --format got10k runs/got-test -o LoRAT-B-224_got10k.zip --root /data/GOT-10k
  lorat pack --format trackingnet runs/trackingnet -o submission.zip
"""
from __future__ import annotations

import argparse
import tempfile
import zipfile
from pathlib import Path

SERVER_SPLIT = "test"  # the only split the GOT-10k and TrackingNet servers score


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=["got10k", "trackingnet"], help="which server")
    parser.add_argument("results", help="evaluation folder or tracker results folder")
    parser.add_argument("-o", "--output", required=True, help="zip file to write")
    parser.add_argument("--root", help="benchmark folder: check that every test sequence has results")
    parser.add_argument("--run", type=int, default=1,
                        help="TrackingNet: which run of a repeated evaluation (default 1)")
    parser.add_argument("--keep-layout", action="store_true",
                        help="evaluation folder: also keep the server's layout (got10k/..., trackingnet/...) in it "
                             "(default: built in a temporary folder, only the zip is written)")


def run(args: argparse.Namespace) -> int:
    from ..data.datasets import load_dataset
    from ..evaluation.formats import run_folder, safe_name, write_format
    from ..evaluation.records import load_records, read_run_info

    results = Path(args.results)
    if not results.is_dir():
        raise FileNotFoundError(f"results folder not found: {results}")
    expected = [s.name for s in load_dataset(args.format, args.root, "test")] if args.root else None
    info = read_run_info(results)
    if info is None:  # a tracker folder in the server's layout: zip it as it is
        path = _pack_and_check(args.format, results, Path(args.output), expected)
        print(f"wrote {path} from {results}")
        return 0
    _check_server_run(info, args.format, results)
    in_run = [name for name in info.get("sequences", []) if name not in set(expected or [])]
    expected = (expected or []) + in_run or None
    tracker = safe_name(info["tracker"])
    records = load_records(results)
    with tempfile.TemporaryDirectory(prefix="lorat-pack-") as scratch:
        # the layout is rebuilt from the records: in the evaluation folder only when asked
        layout_root = results if args.keep_layout else Path(scratch)
        written = write_format(args.format, layout_root, tracker, args.format, records, info.get("split"))
        if args.format == "got10k":
            folder = written / tracker
        else:
            runs = max(max(r) for r in records.values())
            folder = written / run_folder(tracker, args.run, runs)
        path = _pack_and_check(args.format, folder, Path(args.output), expected)
    print(f"wrote {path} from {results}" + (f" (layout kept in {folder})" if args.keep_layout else ""))
    return 0


def _check_server_run(info: dict, fmt: str, results: Path) -> None:
    """The servers score their own benchmark's test split: another benchmark's run, or a val or train split (which
    `lorat report` scores here), is refused with one line."""
    dataset = info.get("dataset")
    if dataset and dataset != fmt:
        raise ValueError(f"{results} is a run of {dataset}, not {fmt}: the {fmt} server scores only its own test "
                         "sequences (choose --format for the benchmark the run tracked)")
    split = info.get("split")
    if split and split.lower() != SERVER_SPLIT:
        raise ValueError(f"{results} is a run of the {fmt} {split} split: the {fmt} server scores the test split "
                         f"only; score {split} here with `lorat report {results}`")


def _pack_and_check(fmt: str, folder: Path, output: Path, expected: list[str] | None) -> Path:
    from ..evaluation import pack_got10k, pack_trackingnet
    from ..evaluation.formats import check_zip

    pack = pack_got10k if fmt == "got10k" else pack_trackingnet
    path = pack(folder, output, expected)
    try:
        check_zip(path, fmt, expected or _sequences_in(folder, fmt))
    except (ValueError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)  # an incomplete submission must not be mistaken for one
        raise
    return path
def _sequences_in(folder: Path, fmt: str) -> list[str]:
    """Without a run or --root, the sequences are what the folder holds: every sub-folder (GOT-10k) or box file."""
    if fmt == "got10k":
        return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    return sorted(p.stem for p in folder.iterdir() if p.suffix == ".txt" and not p.name.endswith("_time.txt"))
