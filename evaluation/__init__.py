"""Benchmarks in, leaderboard files and official metrics out (installed as ``lorat_plugin.evaluation``).

- ``run_benchmark(tracker, sequences, output_dir, *, tracker_name, ...)``: run any batch tracker (resumable,
  torchrun-shardable) and write records plus the result layouts of the benchmark (runner.py);
- ``export_results`` / ``pack_got10k`` / ``pack_trackingnet``: result layouts and server zips (formats.py);
- ``load_results``, ``evaluate``, ``write_report``, ``table``, ``per_sequence_table``: official metrics, metrics.json,
  plots, tables (report.py); ``write_html_report``: all of it on one self-contained page, with frames (html.py);
- ``metrics``: the metric definitions themselves, one function per official tool.
See docs/evaluation.md.
"""
from .benchmarks import BENCHMARKS, FORMATS, Benchmark, benchmark
from .formats import TrackerResults, pack_got10k, pack_trackingnet, read_layout, write_format
from .html import write_html_report
from .records import Record, load_record, load_records, save_record
from .report import (evaluate, load_results, per_sequence_scores, per_sequence_table, render_table, table,
                     write_report)
from .runner import BatchTracker, RunSummary, export_results, run_benchmark

__all__ = ["run_benchmark", "export_results", "RunSummary", "BatchTracker", "BENCHMARKS", "FORMATS", "Benchmark",
           "benchmark", "TrackerResults", "pack_got10k", "pack_trackingnet", "read_layout", "write_format",
           "Record", "load_record", "load_records", "save_record", "evaluate", "load_results", "table",
           "write_report", "per_sequence_table", "per_sequence_scores", "render_table",
           "write_html_report"]
