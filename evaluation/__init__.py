"""Benchmarks in, leaderboard files and official metrics out (installed as ``lorat_plugin.evaluation``): running a
batch tracker (runner.py), result layouts and server zips (formats.py), official metrics (metrics.py), metrics.json,
tables and plots (report.py, plots.py), the HTML report (html.py). See docs/evaluation.md.
"""
from .benchmarks import FORMATS, Benchmark, benchmark
from .formats import TrackerResults, pack_got10k, pack_trackingnet, read_layout, write_format
from .html import write_html_report
from .records import Record, Speed, load_record, load_records, save_record, speed_of
from .report import (evaluate, evaluated_sequences, load_results, per_sequence_scores, per_sequence_table,
                     render_table, table, write_report)
from .runner import BatchTracker, RunOptions, RunSummary, export_results, run_benchmark

__all__ = ["run_benchmark", "RunOptions", "export_results", "RunSummary", "BatchTracker", "Speed", "speed_of",
           "FORMATS", "Benchmark",
           "benchmark", "TrackerResults", "pack_got10k", "pack_trackingnet", "read_layout", "write_format",
           "Record", "load_record", "load_records", "save_record", "evaluate", "evaluated_sequences", "load_results",
           "table",
           "write_report", "per_sequence_table", "per_sequence_scores", "render_table",
           "write_html_report"]
