"""Score result folders by the benchmark's official metric definition: prints a table (with the speed in frames per
second per sequence, and how each evaluation ran) and writes metrics.json, table.txt, report.html and
success/precision plots (PNG; LaSOT also per challenge attribute). Several folders = several
trackers side by side. A folder is a ``lorat evaluate`` output or any folder in the got10k, OTB, LaSOT-toolkit,
pytracking or TrackingNet layout (e.g. another tracker's published raw results).

examples:
  lorat report runs/lasot-b224                      # dataset, split and root come from the run
  lorat report runs/got-val --per-sequence          # also every sequence's scores, worst first
  lorat report runs/lasot-b224 raw/OSTrack384 --dataset lasot --root /data/LaSOT --output reports/lasot
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.datasets import dataset_help, split_help

    parser.add_argument("results", nargs="+", help="evaluation folders or result-layout folders, one per tracker")
    parser.add_argument("--dataset", help=f"benchmark: {dataset_help(scored_only=True)} (default: from the first "
                                          "evaluation folder)")
    parser.add_argument("--root", help="benchmark folder with the ground truth (default: from the evaluation folder)")
    parser.add_argument("--split", help=f"benchmark split: {split_help(scored_only=True)} (default: from the "
                                        "evaluation folder, else the first)")
    parser.add_argument("--tracker-name", nargs="+", dest="names", metavar="NAME",
                        help="display names, one per results folder")
    parser.add_argument("--names", nargs="+", help=argparse.SUPPRESS)  # old name
    parser.add_argument("--output", help="report folder (default: <first evaluation folder>/report, else "
                                         "./lorat-report)")
    parser.add_argument("--no-plots", action="store_true", help="metrics.json and table only: no plots, no report.html")
    parser.add_argument("--per-sequence", action="store_true",
                        help="also print every sequence's scores, worst first by the first tracker's AO (GOT-10k) or "
                             "AUC, trackers side by side")


def run(args: argparse.Namespace) -> int:
    from ..data.datasets import dataset_key, load_dataset
    from ..evaluation import (evaluate, evaluated_sequences, load_results, per_sequence_table, table,
                              write_html_report, write_report)
    from ..evaluation.records import read_run_info

    info = next((i for i in (read_run_info(Path(p)) for p in args.results) if i), {}) or {}
    dataset = args.dataset or info.get("dataset")
    root = args.root or info.get("root")
    split = args.split if args.split is not None else info.get("split")
    if not dataset or not root:
        raise ValueError("give --dataset and --root (they are read from run.json only for `lorat evaluate` folders)")
    if args.names and len(args.names) != len(args.results):
        raise ValueError(f"{len(args.names)} names for {len(args.results)} result folders")
    dataset = dataset_key(dataset)
    sequences = evaluated_sequences(load_dataset(dataset, root, split), info, dataset)
    names = args.names or [None] * len(args.results)
    trackers = [load_results(Path(p), dataset, sequences, name=n) for p, n in zip(args.results, names)]
    result = evaluate(dataset, sequences, trackers, split=split)
    first = Path(args.results[0])
    output = Path(args.output) if args.output else (first / "report" if read_run_info(first) else Path("lorat-report"))
    written = write_report(result, output, plots=not args.no_plots)
    if not args.no_plots:  # the page embeds the plots just written
        written.append(write_html_report(result, output, sequences, trackers, plots=written))
    print(table(result))
    if args.per_sequence:
        print("\n" + per_sequence_table(result))
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
