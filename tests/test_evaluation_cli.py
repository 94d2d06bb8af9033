"""`lorat evaluate`, `lorat report` and `lorat pack` end to end with the real engine and a tiny checkpoint, on
generated benchmarks in the GOT-10k, LaSOT, TrackingNet and OTB layouts."""
from __future__ import annotations

import json
import os
import shutil
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from lorat_plugin.cli import main

from evaluation_support import make_benchmark

experiments = pytest.importorskip("got10k.experiments")


def _evaluate(root, out, dataset, checkpoint, *extra):
    args = ["evaluate", "--dataset", dataset, "--root", str(root), "--output", str(out), "--checkpoint",
            str(checkpoint), "--device", "cpu", "--batch-size", "2", "--no-progress", *extra]
    assert main(args) == 0


@pytest.mark.parametrize("dataset, split", [("got10k", "val"), ("lasot", "test"), ("trackingnet", "TRAIN_0"),
                                            ("otb", None)])
def test_evaluate_then_report_with_the_engine(tmp_path, tiny_checkpoint, capsys, dataset, split):
    root = make_benchmark(tmp_path / "data", dataset, 2, length=6, split=split)
    out = tmp_path / "run"
    _evaluate(root, out, dataset, tiny_checkpoint, *(["--split", split] if split else []))
    summary = capsys.readouterr().out
    assert "2 runs tracked, 0 already done" in summary and "ran on: " in summary
    fps = re.search(r"FPS (\d+\.\d) frames/s per sequence; throughput at batch 2: ", summary).group(1)
    _evaluate(root, out, dataset, tiny_checkpoint, *(["--split", split] if split else []))  # resumes: nothing left
    assert "0 runs tracked, 2 already done" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0  # dataset, root and split come from run.json
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    info = json.loads((out / "run.json").read_text())
    model, name = info["model"], info["tracker"]  # the default name is the model's identity
    precision = model["precision"]  # the precision policy's default for this CPU
    assert name == model["name"] == f"LoRAT-tiny-{model['weights'][:8]}-{precision}"
    assert model["files"] == ["tiny.safetensors"] and precision in ("fp32", "bf16")
    assert f"{name}: tiny.safetensors, weights {model['weights']}, {precision}, backend {info['backend']}" in printed
    assert info['backend'].startswith(('stored bf16 weights', 'fp32 weights')) and 'one call per sequence' in info['backend']
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    entry = metrics["trackers"][name]
    assert metrics["dataset"] == dataset and entry["runs"] == 1 and entry["fps"] > 0
    # the evaluate summary's speed is the report's FPS (table.txt and report.html, tests/test_html_report.py)
    assert f"{entry['fps']:.1f}" == fps and f" {fps} " in lines[2]
    assert (out / "report" / "success_plot.png").stat().st_size > 1000
    if dataset == "got10k":  # the toolkit reads the engine's files and agrees with metrics.json
        toolkit = experiments.ExperimentGOT10k(str(root), subset="val", result_dir=str(out),
                                               report_dir=str(tmp_path / "reports")).report([name])
        overall = toolkit[name]["overall"]
        assert entry["got10k"]["overall"]["ao"] == pytest.approx(overall["ao"], abs=1e-6)
        assert entry["got10k"]["overall"]["speed_fps"] == pytest.approx(overall["speed_fps"], rel=1e-6)
        assert lines[2].split()[-1] == f"{overall['speed_fps']:.1f}"  # the table's speed_fps column, beside FPS
        assert "speed_fps: the got10k toolkit's figure, the mean of per-frame 1/t" in printed
    else:
        headline = entry["trackingnet"]["success"] if dataset == "trackingnet" else entry["ope"]["auc"]
        assert 0.0 < headline <= 1.0


def test_pack_checks_completeness_and_report_compares_trackers(tmp_path, tiny_checkpoint, capsys):
    root = make_benchmark(tmp_path / "GOT", "got10k", 2, length=5, split="test")
    out = tmp_path / "run"
    _evaluate(root, out, "got10k", tiny_checkpoint, "--split", "test", "--tracker-name", "mine")
    assert (out / "mine_got10k.zip").is_file()
    assert main(["pack", "--format", "got10k", str(out), "-o", str(tmp_path / "sub.zip"), "--root", str(root)]) == 0
    with zipfile.ZipFile(tmp_path / "sub.zip") as a, zipfile.ZipFile(out / "mine_got10k.zip") as b:
        assert a.namelist() == b.namelist()
    partial = tmp_path / "partial"
    shutil.copytree(out / "GOT-10k" / "mine", partial)
    shutil.rmtree(partial / "GOT-10k_Test_000002")
    assert main(["pack", "--format", "got10k", str(partial), "-o", str(tmp_path / "x.zip"), "--root", str(root)]) == 2
    assert "1 of 2 sequences have no results" in capsys.readouterr().err

    otb = make_benchmark(tmp_path / "OTB", "otb", 2, length=6)
    _evaluate(otb, tmp_path / "a", "otb", tiny_checkpoint, "--tracker-name", "first")
    _evaluate(otb, tmp_path / "subset", "otb", tiny_checkpoint, "--sequences", "Bolt")
    assert main(["report", str(tmp_path / "subset"), "--no-plots"]) == 0  # scores the evaluated subset
    assert json.loads((tmp_path / "subset" / "report" / "metrics.json").read_text())["sequences"] == 1
    # a second tracker given as published raw results: a flat folder of tab-separated boxes in the benchmark's
    # own convention (OTB: 1-based); this one is an oracle that returns the ground truth
    other = tmp_path / "raw" / "Oracle"
    other.mkdir(parents=True)
    for seq in ("Basketball", "Bolt"):
        gt = np.loadtxt(otb / seq / "groundtruth_rect.txt", delimiter=",")
        np.savetxt(other / f"{seq}.txt", gt, fmt="%.3f", delimiter="\t")
    report = tmp_path / "cmp"
    assert main(["report", str(tmp_path / "a"), str(other), "--output", str(report)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert list(metrics["trackers"]) == ["first", "Oracle"]
    first, oracle = (metrics["trackers"][n]["ope"] for n in ("first", "Oracle"))
    assert oracle["auc"] == pytest.approx(20 / 21) and oracle["precision"] == 1.0  # IoU 1 is not > 1
    assert first["auc"] < oracle["auc"] and metrics["trackers"]["Oracle"]["fps"] is None
    assert {p.name for p in report.iterdir()} >= {"metrics.json", "table.txt", "success_plot.png",
                                                  "precision_plot.png", "norm_precision_plot.png"}


@pytest.mark.slow
def test_torchrun_two_processes_write_the_files_of_one(tmp_path, tiny_checkpoint):
    root = make_benchmark(tmp_path / "LaSOT", "lasot", 3, length=6, split="test")
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    _evaluate(root, single, "lasot", tiny_checkpoint)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "lorat_plugin.cli", "evaluate", "--dataset", "lasot", "--root", str(root),
                           "--output", str(sharded), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                           "--batch-size", "2", "--no-progress"],
                          env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    def box_files(folder):
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.txt"))
                if not p.name.endswith("_time.txt")}

    assert box_files(sharded) == box_files(single) and len(box_files(single)) == 6

    def how_it_ran(folder):
        info = json.loads((folder / "run.json").read_text())
        return info.pop("environments"), info

    (one,), single_info = how_it_ran(single)
    (two,), sharded_info = how_it_ran(sharded)
    assert sharded_info == single_info and (one["world_size"], two["world_size"]) == (1, 2)
    # rank 0's summary counts both ranks' runs (not its share alone)
    assert "3 runs tracked by 2 processes, 0 already done" in done.stdout and "per process" in done.stdout


def test_issue_15_a_folder_reused_for_another_benchmark(tmp_path, tiny_checkpoint, capsys):
    """The reproduction of the report: two generated benchmarks with the same sequence names, one output folder."""
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "ev"
    for root, frames, seed in ((a, "60", "3"), (b, "30", "0")):
        assert main(["make-benchmark", str(root), "--sequences", "2", "--frames", frames, "--size", "160x120",
                     "--seed", seed]) == 0
    _evaluate(a, out, "got10k", tiny_checkpoint, "--split", "val")
    capsys.readouterr()
    _evaluate(b, out, "got10k", tiny_checkpoint, "--split", "val")
    printed = capsys.readouterr().out
    assert "2 runs tracked, 0 already done" in printed and "re-tracked 2 runs whose sequence changed" in printed
    assert main(["report", str(out), "--no-plots", "--per-sequence"]) == 0  # no "60 result boxes for 30 frames"
    printed = capsys.readouterr().out
    assert "per sequence, worst first by AO" in printed and "speed_fps" in printed
    assert json.loads((out / "run.json").read_text())["root"] == str(b.resolve())


def test_an_unreadable_frame_ends_evaluate_with_the_list_of_failures(tmp_path, tiny_checkpoint, capsys):
    root = make_benchmark(tmp_path / "GOT", "got10k", 2, length=5, split="val")
    frame = root / "val" / "GOT-10k_Val_000002" / "00000003.jpg"
    good = frame.read_bytes()
    frame.write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "run"
    args = ["evaluate", "--dataset", "got10k", "--split", "val", "--root", str(root), "--output", str(out),
            "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--no-progress"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "1 runs tracked, 0 already done" in captured.out
    assert "1 runs failed (run the same command again to retry only them)" in captured.err
    assert f"GOT-10k_Val_000002_001: frame 2: cannot decode frame {frame}" in captured.err
    frame.write_bytes(good)
    assert main(args) == 0
    assert "1 runs tracked, 1 already done" in capsys.readouterr().out


def test_evaluate_refuses_another_models_results_in_a_folder(tmp_path, tiny_checkpoint, capsys):
    root = make_benchmark(tmp_path / "OTB", "otb", 1, length=5)
    out = tmp_path / "run"
    _evaluate(root, out, "otb", tiny_checkpoint, "--tracker-name", "mine", "--dtype", "fp32")
    args = ["evaluate", "--dataset", "otb", "--root", str(root), "--output", str(out), "--checkpoint",
            str(tiny_checkpoint), "--device", "cpu", "--no-progress", "--tracker-name", "mine", "--dtype", "bf16"]
    assert main(args) == 2  # same weights, another precision: another tracker
    err = capsys.readouterr().err
    assert "holds the results of another model" in err and "fp32), not of LoRAT-tiny-" in err
    assert "pick another --output" in err
    assert main(args[:-4] + ["--dtype", "bf16"]) == 2  # the default name says bf16: not the folder's tracker
    assert "holds results of tracker 'mine'" in capsys.readouterr().err
