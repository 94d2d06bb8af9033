"""The evaluation harness: result files that the official consumers read, metrics that agree with the got10k
toolkit's own report, resuming after a kill, and torchrun sharding.

The harness is driven by BrightBoxTracker (tests/evaluation_support.py), a real pixel-based batch tracker whose
boxes depend only on each sequence's frames; the real engine runs end to end in test_evaluation_cli.py.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lorat_plugin.data.datasets import load_dataset
from lorat_plugin.evaluation import (RunOptions, evaluate, load_results, per_sequence_table, run_benchmark, table,
                                     write_report)
from lorat_plugin.evaluation.records import load_records, record_path

from evaluation_support import BrightBoxTracker, generated_sequence, make_benchmark

experiments = pytest.importorskip("got10k.experiments")
TOL = 1e-6


def fixed_clock(step: float = 0.004):
    """Every tracker call lasts ``step`` seconds: identical batches give identical time files."""
    counter = itertools.count()
    return lambda: next(counter) * step


def files_of(folder: Path, *, skip_times: bool = False) -> dict[str, bytes]:
    """Every file but the records; ``skip_times``: also without the times and how the run ran (run.json's
    environments), which differ between batch sizes and process counts."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix == ".npz":
            continue
        if skip_times and (path.name.endswith("_time.txt") or path.suffix == ".zip"):
            continue
        content = path.read_bytes()
        if skip_times and path.name == "run.json":
            content = json.dumps({k: v for k, v in json.loads(content).items() if k != "environments"}).encode()
        out[str(path.relative_to(folder))] = content
    return out


def test_got10k_val_metrics_agree_with_the_toolkit_report(tmp_path):
    make_benchmark(tmp_path / "GOT", "got10k", 3, split="val")
    sequences = load_dataset("got10k", tmp_path / "GOT", "val")
    out = tmp_path / "run"
    run_benchmark(BrightBoxTracker(offset=1.5), sequences, out, tracker_name="bright", split="val", repeats=3,
                  batch_size=2, progress=False)
    ours = evaluate("got10k", sequences, [load_results(out, "got10k", sequences)])["trackers"]["bright"]["got10k"]
    # the toolkit reads our got10k layout back (result_dir/GOT-10k/<tracker>/<seq>/<seq>_00k.txt + _time.txt)
    toolkit = experiments.ExperimentGOT10k(str(tmp_path / "GOT"), subset="val", result_dir=str(out),
                                           report_dir=str(tmp_path / "reports")).report(["bright"])["bright"]
    assert 0.2 < ours["overall"]["ao"] < 0.99  # a tracker with errors, so the definitions matter
    for key_ours, key_toolkit in (("ao", "ao"), ("sr50", "sr"), ("speed_fps", "speed_fps")):
        assert ours["overall"][key_ours] == pytest.approx(toolkit["overall"][key_toolkit], rel=TOL, abs=TOL)
    np.testing.assert_allclose(ours["overall"]["succ_curve"], toolkit["overall"]["succ_curve"], atol=TOL)
    for name, seq in toolkit["seq_wise"].items():
        for key in ("ao", "sr", "speed_fps", "length"):
            assert ours["seq_wise"][name][key] == pytest.approx(seq[key], rel=TOL, abs=TOL)
    records = load_records(out)
    assert all(set(r) == {1, 2, 3} for r in records.values())
    times = np.loadtxt(out / "GOT-10k/bright/GOT-10k_Val_000001/GOT-10k_Val_000001_time.txt", delimiter=",")
    assert times.shape == (12, 3) and (times > 0).all()  # one column per run, as the toolkit appends them


class OfflineOTB(experiments.ExperimentOTB):
    """ExperimentOTB without its hard-coded download=True (got10k/experiments/otb.py builds OTB(..., download=True))."""

    def __init__(self, root_dir, result_dir, report_dir):
        from got10k.datasets import OTB

        self.dataset = OTB(root_dir, 2015, download=False)
        self.result_dir = os.path.join(result_dir, "OTB2015")
        self.report_dir = os.path.join(report_dir, "OTB2015")
        self.nbins_iou, self.nbins_ce = 21, 51


@pytest.mark.parametrize("dataset", ["otb", "uav123", "nfs"])
def test_otb_family_metrics_agree_with_the_toolkit_report(tmp_path, dataset):
    root = tmp_path / dataset
    if dataset == "uav123":
        make_benchmark(root, dataset, names=["uav6"], length=109, hidden=(7, 8))
        for extra in ("README", "configSeqs.m"):  # UAV123's integrity check wants > 3 entries in the root
            (root / extra).write_text("")
    else:
        make_benchmark(root, dataset, 2, split="30" if dataset == "nfs" else None,
                       names=None if dataset == "otb" else ["bee", "Gymnastics"])
    sequences = load_dataset(dataset, root)
    out = tmp_path / "run"
    run_benchmark(BrightBoxTracker(offset=2.0), sequences, out, tracker_name="bright", progress=False)
    result = evaluate(dataset, sequences, [load_results(out, dataset, sequences)])["trackers"]["bright"]
    ours = result["got10k_otb"]
    kwargs = dict(result_dir=str(out), report_dir=str(tmp_path / "reports"))
    experiment = {"otb": lambda: OfflineOTB(str(root), **kwargs),
                  "uav123": lambda: experiments.ExperimentUAV123(str(root), "UAV123", **kwargs),
                  "nfs": lambda: experiments.ExperimentNfS(str(root), fps=30, **kwargs)}[dataset]()
    toolkit = experiment.report(["bright"])["bright"]["overall"]
    for key in ("success_score", "precision_score", "success_rate", "speed_fps"):
        assert ours[key] == pytest.approx(toolkit[key], rel=TOL, abs=TOL), key
    np.testing.assert_allclose(ours["success_curve"], toolkit["success_curve"], atol=TOL)
    np.testing.assert_allclose(ours["precision_curve"], toolkit["precision_curve"], atol=TOL)
    if dataset != "uav123":  # no invalid frames: pytracking's OPE and got10k's OTB coincide
        assert result["ope"]["auc"] == pytest.approx(toolkit["success_score"], abs=TOL)
        assert result["ope"]["precision"] == pytest.approx(toolkit["precision_score"], abs=TOL)
    else:  # pytracking counts the 2 NaN-GT frames as misses over all 109 frames; got10k drops them
        assert result["ope"]["sr50"] == pytest.approx(toolkit["success_rate"] * 107 / 109, abs=TOL)


def test_got10k_test_zip_is_the_toolkit_submission(tmp_path):
    make_benchmark(tmp_path / "GOT", "got10k", 2, split="test")
    sequences = load_dataset("got10k", tmp_path / "GOT", "test")
    out = tmp_path / "run"
    summary = run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="bright", split="test",
                            progress=False)
    ours = out / "bright_got10k.zip"
    assert ours in summary.outputs
    # the toolkit's test "report" zips the same tracker folder (it chdirs into it, so it runs last)
    experiments.ExperimentGOT10k(str(tmp_path / "GOT"), subset="test", result_dir=str(out)).report(["bright"])
    theirs = out / "GOT-10k" / "bright.zip"
    with zipfile.ZipFile(ours) as a, zipfile.ZipFile(theirs) as b:
        assert sorted(a.namelist()) == sorted(b.namelist()) == [
            "GOT-10k_Test_000001/", "GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt",
            "GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt", "GOT-10k_Test_000002/",
            "GOT-10k_Test_000002/GOT-10k_Test_000002_001.txt", "GOT-10k_Test_000002/GOT-10k_Test_000002_time.txt"]
        for name in a.namelist():
            assert a.read(name) == b.read(name)
        boxes = np.loadtxt(a.open("GOT-10k_Test_000002/GOT-10k_Test_000002_001.txt"), delimiter=",")
        assert boxes.shape == (len(sequences[1]), 4)
    with pytest.raises(ValueError, match="ground truth is withheld"):
        evaluate("got10k", sequences, [load_results(out, "got10k", sequences)])


def test_trackingnet_zip_has_the_structure_the_server_matches(tmp_path):
    make_benchmark(tmp_path / "TN", "trackingnet", 3, split="TEST")
    sequences = load_dataset("trackingnet", tmp_path / "TN")
    out = tmp_path / "run"
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="bright", progress=False)
    with zipfile.ZipFile(out / "bright_trackingnet.zip") as archive:
        members = [n for n in archive.namelist() if n.endswith(".txt")]
        assert sorted(members) == sorted(f"{s.name}.txt" for s in sequences)  # at the zip root
        for s in sequences:  # the server takes the one submission file whose name contains the GT's base name
            (match,) = [n for n in members if f"{s.name}.txt" in n]
            boxes = np.loadtxt(archive.open(match), delimiter=",")
            assert boxes.shape == (len(s), 4)
            np.testing.assert_allclose(boxes[0], s.boxes[0], atol=5e-4)


def test_lasot_layouts_report_and_attributes(tmp_path):
    make_benchmark(tmp_path / "LaSOT", "lasot", 4, split="test", hidden=(3, 4, 5))
    sequences = load_dataset("lasot", tmp_path / "LaSOT")
    out = tmp_path / "run"
    run_benchmark(BrightBoxTracker(offset=1.0), sequences, out, tracker_name="Bright Box", progress=False,
                  batch_size=3, repeats=2)
    records = load_records(out)
    for s in sequences:
        matlab = np.loadtxt(out / "lasot" / "Bright_Box_002_tracking_result" / f"{s.name}.txt", delimiter=",")
        np.testing.assert_allclose(matlab[:, :2], records[s.name][2].boxes[:, :2] + 1, atol=5e-4)  # 1-based
        pytracking = np.loadtxt(out / "pytracking" / "Bright_Box_002" / f"{s.name}.txt", delimiter="\t")
        np.testing.assert_array_equal(pytracking, matlab)
        assert records[s.name][1].scores[0] == 1.0 and records[s.name][1].scores[4] == 0.0  # hidden target
    # the run folder, and the MATLAB-layout folder holding both runs as <tracker>_00k_tracking_result
    result = evaluate("lasot", sequences, [load_results(out, "lasot", sequences),
                                           load_results(out / "lasot", "lasot", sequences)])
    a, b = result["trackers"]["Bright_Box"], result["trackers"]["Bright_Box (2)"]
    assert a["runs"] == b["runs"] == 2 and len(a["per_run"]) == 2
    assert a["ope"]["auc"] == b["ope"]["auc"] and a["ope"]["norm_precision"] == b["ope"]["norm_precision"]
    assert a["lasot_toolkit"]["auc"] == b["lasot_toolkit"]["auc"] > 0
    assert b["fps"] is None and a["fps"] > 0  # the MATLAB layout has no times
    # frames 3-5 are invisible in every sequence: misses over all frames (the tracker finds every visible target)
    assert a["ope"]["success_curve"][0] == pytest.approx(np.mean([(len(s) - 3) / len(s) for s in sequences]))
    assert {k: v["sequences"] for k, v in a["attributes"].items()} == {"IV": 2, "POC": 4, "FM": 1}
    assert a["attributes"]["POC"]["auc"] == pytest.approx(a["ope"]["auc"])
    written = write_report(result, tmp_path / "report")
    assert {p.name for p in written} >= {"metrics.json", "table.txt", "success_plot.png", "precision_plot.png",
                                         "norm_precision_plot.png", "attributes_auc.png"}
    assert all(p.stat().st_size > 1000 for p in written if p.suffix == ".png")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(metrics["trackers"]) == {"Bright_Box", "Bright_Box (2)"}
    assert "AUC per attribute" in table(result)


def test_kill_and_resume_writes_the_same_files_as_an_uninterrupted_run(tmp_path):
    make_benchmark(tmp_path / "GOT", "got10k", 4, split="test")
    sequences = load_dataset("got10k", tmp_path / "GOT", "test")
    whole = tmp_path / "whole"
    run_benchmark(BrightBoxTracker(), sequences, whole, tracker_name="t", split="test", batch_size=1,
                  progress=False, clock=fixed_clock())
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):  # killed while starting the 3rd sequence
        run_benchmark(BrightBoxTracker(fail_after_init=3), sequences, resumed, tracker_name="t", split="test",
                      batch_size=1, progress=False, clock=fixed_clock())
    assert len(load_records(resumed)) == 2
    assert not [p for p in resumed.rglob("*") if p.name.endswith(".tmp")]
    summary = run_benchmark(BrightBoxTracker(), sequences, resumed, tracker_name="t", split="test", batch_size=1,
                            progress=False, clock=fixed_clock())
    assert summary.skipped == 2 and len(summary.completed) == 2
    assert files_of(resumed) == files_of(whole)  # boxes, times, run.json and the server zip, byte for byte

    # with 2 sequences in flight, a kill loses at most those two
    batched = tmp_path / "batched"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(BrightBoxTracker(fail_after_init=3), sequences, batched, tracker_name="t", split="test",
                      batch_size=2, progress=False)
    assert len(load_records(batched)) >= 2
    run_benchmark(BrightBoxTracker(), sequences, batched, tracker_name="t", split="test", batch_size=2,
                  progress=False)
    assert files_of(batched, skip_times=True) == files_of(whole, skip_times=True)


def test_an_output_folder_belongs_to_one_tracker_and_benchmark(tmp_path):
    make_benchmark(tmp_path / "OTB", "otb", 1)
    sequences = load_dataset("otb", tmp_path / "OTB")
    run_benchmark(BrightBoxTracker(), sequences, tmp_path / "run", tracker_name="a", progress=False)
    with pytest.raises(ValueError, match="holds results of tracker 'a'"):
        run_benchmark(BrightBoxTracker(), sequences, tmp_path / "run", tracker_name="b", progress=False)


def test_batches_stay_full_and_tracker_errors_are_clear(tmp_path):
    make_benchmark(tmp_path / "OTB", "otb", 4)
    sequences = load_dataset("otb", tmp_path / "OTB")  # lengths 12, 15, 18, 21
    tracker = BrightBoxTracker()
    run_benchmark(tracker, sequences, tmp_path / "run", tracker_name="a", batch_size=3, progress=False)
    # 66 frames in 27 calls: init [21, 18, 15], 14 steps, init [12] in the freed slot, 11 steps (a scheduler that
    # waited for the whole first batch would need 2 + 20 + 11 = 33 calls)
    assert sum(tracker.batch_sizes) == 66 and max(tracker.batch_sizes) == 3
    assert len(tracker.batch_sizes) == 27

    class Broken(BrightBoxTracker):
        def track(self, states, frames):
            boxes, scores = super().track(states, frames)
            boxes[0] = np.nan
            return boxes, scores

    with pytest.raises(RuntimeError, match=r"tracker returned \[nan"):
        run_benchmark(Broken(), sequences, tmp_path / "broken", tracker_name="a", progress=False)


WORKER = """
import json, os, sys
sys.path.insert(0, {tests!r})
from lorat_plugin.data.datasets import load_dataset
from lorat_plugin.evaluation import run_benchmark
from evaluation_support import BrightBoxTracker

sequences = load_dataset("got10k", {root!r}, "val")
summary = run_benchmark(BrightBoxTracker(), sequences, {out!r}, tracker_name="bright", split="val", repeats=2,
                        batch_size=2, progress=False)
with open(os.path.join({out!r}, f"rank{{summary.rank}}.json"), "w") as f:
    json.dump({{"rank": summary.rank, "world": summary.world_size, "completed": summary.completed,
               "completed_here": summary.completed_here, "frames": summary.frames,
               "seconds": summary.tracker_seconds, "fps": summary.fps,
               "outputs": [str(p) for p in summary.outputs]}}, f)
"""


def test_two_process_torchrun_writes_the_files_of_a_one_process_run(tmp_path):
    make_benchmark(tmp_path / "GOT", "got10k", 5, split="val", length=8)
    sequences = load_dataset("got10k", tmp_path / "GOT", "val")
    single = tmp_path / "single"
    run_benchmark(BrightBoxTracker(), sequences, single, tracker_name="bright", split="val", repeats=2, batch_size=2,
                  progress=False)
    sharded = tmp_path / "sharded"
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), root=str(tmp_path / "GOT"), out=str(sharded)))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script)], env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((sharded / f"rank{r}.json").read_text()) for r in (0, 1)]
    shares = [{tuple(c) for c in r["completed_here"]} for r in ranks]
    assert all(r["world"] == 2 for r in ranks) and all(shares) and not shares[0] & shares[1]
    assert len(shares[0] | shares[1]) == 10  # 5 sequences x 2 runs, each tracked once
    assert ranks[1]["outputs"] == [] and ranks[0]["outputs"]  # rank 0 merged and wrote the layouts
    # rank 0's summary (the one `lorat evaluate` prints) counts every rank's work, and its speed is the report's
    assert {tuple(c) for c in ranks[0]["completed"]} == shares[0] | shares[1]
    assert ranks[0]["frames"] == 2 * sum(len(s) for s in sequences)  # 2 runs of every frame
    assert ranks[1]["frames"] < ranks[0]["frames"]
    assert ranks[0]["seconds"] > ranks[1]["seconds"] > 0
    report = evaluate("got10k", sequences, [load_results(sharded, "got10k", sequences)])["trackers"]["bright"]
    assert ranks[0]["fps"] == report["speed"]["fps"] > 0
    environments = json.loads((sharded / "run.json").read_text())["environments"]
    assert [(e["world_size"], e["batch_size"], e["threads"]) for e in environments] == [(2, 2, 1)]
    for p in sharded.glob("rank*.json"):
        p.unlink()
    assert files_of(sharded, skip_times=True) == files_of(single, skip_times=True)
    time_files = sorted(p.relative_to(sharded) for p in sharded.rglob("*_time.txt"))
    assert time_files == sorted(p.relative_to(single) for p in single.rglob("*_time.txt"))


def _got10k(root: Path, length: int, seed: int = 0) -> list:
    from lorat_plugin.data.datasets.write import write_dataset

    names = ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    write_dataset(root, "got10k", [generated_sequence(n, length + i, seed=seed + i) for i, n in enumerate(names)],
                  split="val")
    return load_dataset("got10k", root, "val")


def test_a_folder_reused_for_another_benchmark_retracks_what_changed(tmp_path, caplog):
    a, b = _got10k(tmp_path / "A", 20, seed=3), _got10k(tmp_path / "B", 10)
    out = tmp_path / "run"
    run_benchmark(BrightBoxTracker(), a, out, tracker_name="t", split="val", progress=False)
    summary = run_benchmark(BrightBoxTracker(), b, out, tracker_name="t", split="val", progress=False)
    assert summary.retracked == ["GOT-10k_Val_000002_001", "GOT-10k_Val_000001_001"] and summary.skipped == 0
    assert "re-tracking 2 runs whose sequence changed" in caplog.text
    assert [len(r[1].boxes) for r in load_records(out).values()] == [10, 11]
    evaluate("got10k", b, [load_results(out, "got10k", b)])  # scores B, no "20 result boxes for 10 frames"
    with pytest.raises(ValueError, match="GOT-10k_Val_000001_001.npz: tracked on another version of GOT-10k_Val_0000"):
        load_results(out, "got10k", _got10k(tmp_path / "B2", 10, seed=7))  # same lengths, other ground truth
    # the same benchmark in another folder is the same benchmark: nothing to track
    moved = tmp_path / "moved"
    (tmp_path / "B").rename(moved)
    assert run_benchmark(BrightBoxTracker(), load_dataset("got10k", moved, "val"), out, tracker_name="t",
                         split="val", progress=False).skipped == 2
    # records from before fingerprints: kept when the frame count matches, else re-tracked
    for path in (out / "records").glob("*.npz"):
        with np.load(path) as data:
            np.savez(path, **{k: data[k] for k in data.files if k not in ("fingerprint", "schema_version")})
    assert all(r[1].fingerprint is None for r in load_records(out).values())
    changed = _got10k(tmp_path / "C", 10, seed=5)[:1] + _got10k(tmp_path / "D", 12)[1:]  # same length; longer
    summary = run_benchmark(BrightBoxTracker(), changed, out, tracker_name="t", split="val", progress=False)
    assert summary.retracked == ["GOT-10k_Val_000002_001"] and summary.skipped == 1


def test_an_unreadable_frame_fails_its_sequence_alone_and_is_retried_next_time(tmp_path):
    make_benchmark(tmp_path / "OTB", "otb", 3)
    sequences = load_dataset("otb", tmp_path / "OTB")
    frame = sequences[1].frames[5]
    good = frame.read_bytes()
    frame.write_bytes(b"not a jpeg")
    out = tmp_path / "run"
    summary = run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", batch_size=2, progress=False)
    assert sorted(load_records(out)) == ["Basketball", "Boy"]
    assert list(summary.failures) == ["Bolt_001"] and f"frame 5: cannot decode frame {frame}" in summary.failures[
        "Bolt_001"]
    assert (out / "records" / "Bolt_001.failed.txt").is_file()
    frame.write_bytes(good)
    summary = run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", batch_size=2, progress=False)
    assert summary.completed == [("Bolt", 1)] and summary.skipped == 2 and not summary.failures
    assert not (out / "records" / "Bolt_001.failed.txt").exists()


def test_a_second_run_on_a_folder_is_refused_while_the_first_lives(tmp_path):
    make_benchmark(tmp_path / "OTB", "otb", 1)
    sequences = load_dataset("otb", tmp_path / "OTB")
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom lorat_plugin.evaluation.records import "
                               "exclusive\nwith exclusive(sys.argv[1]):\n    print('held', flush=True)\n"
                               "    time.sleep(600)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=f"{out} is in use by another `lorat evaluate` run"):
            run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", progress=False)
        assert not (out / "records").exists()
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock, nothing stale is left
        holder.wait()
    assert len(run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", progress=False).completed) == 1


def test_run_json_records_the_model_and_refuses_another_one(tmp_path):
    make_benchmark(tmp_path / "OTB", "otb", 2)
    sequences = load_dataset("otb", tmp_path / "OTB")
    out = tmp_path / "run"
    model = {"name": "LoRAT-B-224-0123abcd-bf16", "variant": "B-224", "weights": "0123abcdef01",
             "files": ["base.bin", "dinov2_vitb14_pretrain.pth"], "precision": "bf16"}
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", model=model, backend="eager",
                  progress=False)
    info = json.loads((out / "run.json").read_text())
    assert info["schema_version"] == 3 and info["model"] == model and info["backend"] == "eager"
    assert str(tmp_path) not in json.dumps(info["model"])
    for change in ({"weights": "ffffffffffff"}, {"precision": "fp32"}):
        with pytest.raises(ValueError, match="holds the results of another model .* pick another --output"):
            run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", model={**model, **change},
                          progress=False)
    # the same files under another name (moved, renamed) are the same model
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", model={**model, "files": ["x.bin"]},
                  progress=False)
    printed = table(evaluate("otb", sequences, [load_results(out, "otb", sequences)]))
    assert "t: B-224, weights 0123abcdef01, bf16, backend eager" in printed
    # a folder written before the schema (no model, no fingerprints, no environments) still loads and resumes
    info = {k: v for k, v in info.items() if k not in ("schema_version", "model", "backend", "environments")}
    (out / "run.json").write_text(json.dumps(info))
    assert load_results(out, "otb", sequences).model == {}
    assert run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", progress=False).skipped == 2


def test_speed_is_per_sequence_whatever_the_batch_and_warm_up_is_left_out(tmp_path):
    """Every tracker call lasts 4 ms whatever its batch: a sequence advances 250 frames per second at batch 1 and at
    batch 3 alike, while the throughput grows with the batch (the old convention divided each call by its batch)."""
    make_benchmark(tmp_path / "OTB", "otb", 4)
    sequences = load_dataset("otb", tmp_path / "OTB")  # lengths 12, 15, 18, 21: 66 frames
    speeds = {}
    options = RunOptions(tracker_name="t", progress=False, batch_size=8)
    for batch in (1, 3):
        out = tmp_path / f"batch{batch}"  # the options as one object, a field replaced by a keyword
        summary = run_benchmark(BrightBoxTracker(), sequences, out, options, batch_size=batch,
                                clock=fixed_clock(0.004))
        entry = evaluate("otb", sequences, [load_results(out, "otb", sequences)])["trackers"]["t"]
        speeds[batch] = entry["speed"]
        assert summary.fps == entry["fps"] == entry["speed"]["fps"] == pytest.approx(250.0)
        # the time files hold each frame's whole call: what a one-sequence-at-a-time tracker records
        np.testing.assert_allclose(np.loadtxt(out / "OTB2015" / "t" / "times" / "Bolt_time.txt"), 0.004)
    # batch 1: the 4 initialisations and the first call of one sequence are warm-up
    assert speeds[1]["warmup_frames"] == 4 + 1 and speeds[1]["frames"] == 66 - 5
    assert speeds[1]["throughput"] == pytest.approx(250.0) and speeds[1]["batch"] == 1
    # batch 3 (see test_batches_stay_full...): 4 initialisations, then the first calls with 3, 2 and 1 sequences
    assert speeds[3]["warmup_frames"] == 4 + 3 + 2 + 1 and speeds[3]["frames"] == 66 - 10
    assert speeds[3]["batch"] == 3 and 2.5 * 250 < speeds[3]["throughput"] < 3 * 250
    assert speeds[3]["warmup_seconds"] == pytest.approx(0.004 * (2 + 3))  # 2 init calls, 3 first-shape calls
    result = evaluate("otb", sequences, [load_results(tmp_path / "batch3", "otb", sequences)])
    lines = table(result).splitlines()
    header, row = lines[1].split(), lines[2].split()
    assert header[-3:] == ["FPS", "batch", "throughput"] and row[-3:-1] == ["250.0", "3"]
    assert any(line.startswith("FPS: frames per second per sequence") for line in lines)
    assert "t: warm-up left out: 10 frames, 0.02 s of tracker calls" in lines


def test_speed_of_older_folders_is_labelled_and_untimed_trackers_are_marked(tmp_path):
    make_benchmark(tmp_path / "GOT", "got10k", 2, split="val")
    sequences = load_dataset("got10k", tmp_path / "GOT", "val")
    out = tmp_path / "old"
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="old", split="val", batch_size=2,
                  progress=False, clock=fixed_clock(0.004))
    for path in (out / "records").glob("*.npz"):  # as schema 2 wrote them: each call's time divided by its batch
        with np.load(path) as data:
            kept = {k: data[k] for k in data.files if k not in ("warmup", "batch", "environment", "schema_version")}
        np.savez(path, **{**kept, "times": kept["times"] / 2, "schema_version": np.array(2)})
    info = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**info, "schema_version": 2, "environments": []}))
    static = tmp_path / "static"
    run_benchmark(BrightBoxTracker(), sequences, static, tracker_name="static", split="val", timed=False,
                  progress=False)
    result = evaluate("got10k", sequences, [load_results(out, "got10k", sequences),
                                            load_results(static, "got10k", sequences)])
    old, untimed = result["trackers"]["old"], result["trackers"]["static"]
    assert old["speed"]["convention"] == "divided" and old["speed"]["fps"] == pytest.approx(500.0)
    assert untimed["fps"] is None and not untimed["speed"]["timed"]
    text = table(result)
    old_row, static_row = (line.split() for line in text.splitlines()[2:4])
    assert old_row[-5:-1] == ["500.0", "(old)", "-", "-"] and float(old_row[-1]) > 0  # FPS, batch, throughput
    assert static_row[1:4] != ["-"] * 3 and static_row[-5:] == ["no", "model", "-", "-", "-"]
    assert "old: (old) records before schema 3, whose times were divided by the sequences per call" in text
    assert "static: no model: its time is the harness's, not a tracker's speed" in text
    assert "speed_fps: the got10k toolkit's figure, the mean of per-frame 1/t" in text


def test_run_json_records_how_it_ran(tmp_path, monkeypatch):
    import torch

    from lorat_plugin import environment

    make_benchmark(tmp_path / "OTB", "otb", 2)
    sequences = load_dataset("otb", tmp_path / "OTB")
    out = tmp_path / "run"
    monkeypatch.setattr(environment, "PACKAGES", (*environment.PACKAGES, "no-such-package"))
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", batch_size=3, progress=False)
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", batch_size=3, progress=False)  # nothing new
    (ran,) = json.loads((out / "run.json").read_text())["environments"]
    assert (ran["batch_size"], ran["world_size"], ran["threads"]) == (3, 1, torch.get_num_threads())
    assert ran["versions"]["torch"] == torch.__version__ and ran["versions"]["no-such-package"] is None
    assert set(ran["versions"]) >= {"lorat-plugin", "torch", "timm", "onnxruntime"}
    assert ran["device"]["type"] == "cpu" and ran["device"]["name"]
    assert ran["device"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert all(r.environment == 0 for runs in load_records(out).values() for r in runs.values())
    # a resumed run with other settings adds its own, and its records point at it
    (out / "records" / "Bolt_001.npz").unlink()
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", batch_size=1, progress=False)
    environments = json.loads((out / "run.json").read_text())["environments"]
    assert [e["batch_size"] for e in environments] == [3, 1]
    assert load_records(out)["Bolt"][1].environment == 1 and load_records(out)["Basketball"][1].environment == 0
    text = table(evaluate("otb", sequences, [load_results(out, "otb", sequences)]))
    assert text.count("t ran on: ") == 2 and "batch 3, 1 process" in text and "no-such-package -" in text


@pytest.mark.parametrize("relative, content, match", [
    ("Bolt.txt", "1,1,5,5\n" * 3, r"Bolt.txt: 3 result boxes for 15 frames"),
    ("times/Bolt_time.txt", "0.01\n" * 3, r"Bolt_time.txt: 3 times for 15 frames"),
    ("times/Bolt_time.txt", "0.01\nfast\n", r"Bolt_time.txt: not a table of seconds per frame"),
    ("records", None, r"records/Bolt_001.npz: 3 result boxes for 15 frames of Bolt"),
])
def test_report_errors_name_the_file(tmp_path, relative, content, match):
    make_benchmark(tmp_path / "OTB", "otb", 2)
    sequences = load_dataset("otb", tmp_path / "OTB")
    out = tmp_path / "run"
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", progress=False)
    if content is None:  # a record of another benchmark's sequence, e.g. copied in by hand
        from lorat_plugin.evaluation import Record, save_record

        save_record(out, Record("Bolt", 1, np.ones((3, 4)), np.ones(3), np.ones(3)))
        folder = out
    else:
        folder = out / "OTB2015" / "t"
        (folder / relative).write_text(content)
    with pytest.raises(ValueError, match=match):
        load_results(folder, "otb", sequences)


def test_per_sequence_table_is_worst_first_and_side_by_side(tmp_path):
    make_benchmark(tmp_path / "GOT", "got10k", 3, split="val")
    sequences = load_dataset("got10k", tmp_path / "GOT", "val")
    results = []
    for name, offset in (("near", 0.5), ("far", 4.0)):
        run_benchmark(BrightBoxTracker(offset=offset), sequences, tmp_path / name, tracker_name=name, split="val",
                      progress=False)
        results.append(load_results(tmp_path / name, "got10k", sequences))
    result = evaluate("got10k", sequences, results)
    text = per_sequence_table(result)
    lines = text.splitlines()
    assert lines[0].endswith("per sequence, worst first by AO of near") and lines[1] == "[1] near  [2] far"
    assert lines[2].split() == ["sequence", "AO", "[1]", "SR0.5", "[1]", "SR0.75", "[1]", "AO", "[2]", "SR0.5", "[2]",
                                "SR0.75", "[2]"]
    ao = {s: v["ao"] for s, v in result["trackers"]["near"]["got10k"]["seq_wise"].items()}
    assert [line.split()[0] for line in lines[3:]] == sorted(ao, key=ao.get)
    first = lines[3].split()
    worst = min(ao, key=ao.get)
    assert first[0] == worst and float(first[1]) == pytest.approx(100 * ao[worst], abs=0.05)
    assert float(first[4]) == pytest.approx(100 * result["trackers"]["far"]["got10k"]["seq_wise"][worst]["ao"],
                                            abs=0.05)
    # the speed column is the got10k toolkit's speed_fps under its name
    assert "speed_fps" in table(result).splitlines()[1]


@pytest.mark.parametrize("proc", [True, False])
def test_the_umask_is_read_without_changing_it_on_linux(monkeypatch, proc: bool) -> None:
    from lorat_plugin import files

    if not proc:  # another OS: no /proc, the set-and-restore read
        monkeypatch.setattr(files, "open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc")), raising=False)
    elif not Path("/proc/self/status").is_file():
        pytest.skip("no /proc on this OS")
    old = os.umask(0o027)
    try:
        if proc:  # a read that set the umask to 0 would show here
            monkeypatch.setattr(files.os, "umask", lambda mask: pytest.fail("the umask was set"))
        assert files._umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(old)


def test_result_files_get_the_umask_mode(tmp_path):
    make_benchmark(tmp_path / "GOT", "got10k", 2, split="test")
    sequences = load_dataset("got10k", tmp_path / "GOT", "test")
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="t", split="test", progress=False)
        val = load_dataset("otb", make_benchmark(tmp_path / "OTB", "otb", 1))
        run_benchmark(BrightBoxTracker(), val, tmp_path / "otb", tracker_name="t", progress=False)
        write_report(evaluate("otb", val, [load_results(tmp_path / "otb", "otb", val)]), tmp_path / "otb" / "report")
    finally:
        os.umask(old)
    files = [p for folder in (out, tmp_path / "otb") for p in folder.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".npz", ".json", ".txt", ".zip", ".png"} <= kinds
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}


def test_an_unknown_benchmark_key_is_an_error_before_any_tracking(tmp_path):
    from lorat_plugin.evaluation import benchmark

    make_benchmark(tmp_path / "GOT", "got10k", 1, split="val")
    sequences = load_dataset("got10k", tmp_path / "GOT", "val")
    tracker = BrightBoxTracker()
    with pytest.raises(ValueError, match="unknown dataset 'got10k_val'; known: got10k, .*, procedural, custom"):
        run_benchmark(tracker, sequences, tmp_path / "run", tracker_name="bright", dataset="got10k_val",
                      progress=False)
    assert tracker.init_calls == 0
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        evaluate("imagenet", sequences, [])
    with pytest.raises(ValueError, match="coco is training data only"):
        benchmark("coco")


def test_sequences_naming_no_benchmark_are_custom_zero_based_ope(tmp_path):
    from dataclasses import replace

    make_benchmark(tmp_path / "OTB", "otb", 2, length=6)
    one_based = load_dataset("otb", tmp_path / "OTB")
    sequences = [replace(s, dataset="") for s in one_based]  # e.g. built by hand in Python
    out = tmp_path / "run"
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="bright", progress=False)
    assert json.loads((out / "run.json").read_text())["dataset"] == "custom"
    result = evaluate("custom", sequences, [load_results(out, "custom", sequences)])
    assert result["title"] == "Custom sequences" and "got10k_otb" not in result["trackers"]["bright"]
    first = sequences[0]
    written = np.loadtxt(out / "pytracking" / "bright" / f"{first.name}.txt", delimiter="\t")
    records = load_records(out)
    np.testing.assert_allclose(written, records[first.name][1].boxes, atol=5e-4)  # 0-based, as tracked


def test_a_registered_reader_is_scored_by_its_own_conventions(tmp_path, monkeypatch):
    """A new benchmark reader registers its conventions once; the runner and the report read them from there."""
    from dataclasses import replace

    from lorat_plugin.data.datasets import DatasetInfo, registry

    make_benchmark(tmp_path / "OTB", "otb", 2, length=6)
    sequences = [replace(s, dataset="stub") for s in load_dataset("otb", tmp_path / "OTB")]
    monkeypatch.setattr(registry, "DATASETS", dict(registry.DATASETS))
    registry.register(DatasetInfo("stub", "Stub benchmark", lambda root, split: sequences, splits=("all",),
                                  default_split="all", one_based=True, formats=("lasot",)))
    out = tmp_path / "run"
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="bright", progress=False)
    first = sequences[0]
    written = np.loadtxt(out / "lasot" / "bright_tracking_result" / f"{first.name}.txt", delimiter=",")
    np.testing.assert_allclose(written[:, :2], load_records(out)[first.name][1].boxes[:, :2] + 1, atol=5e-4)
    result = evaluate("stub", sequences, [load_results(out, "stub", sequences)])
    assert result["title"] == "Stub benchmark" and "auc" in result["trackers"]["bright"]["ope"]


def _test_split_run(tmp_path: Path, names: list[str]) -> tuple[Path, Path]:
    """A GOT-10k test split with these sequence names, tracked: (benchmark root, evaluation folder)."""
    from lorat_plugin.data.datasets.write import write_dataset

    root = write_dataset(tmp_path / "GOT", "got10k", [generated_sequence(n, 5 + i, seed=i) for i, n in
                                                       enumerate(names)], split="test")
    sequences = load_dataset("got10k", root, "test")
    out = tmp_path / "run"
    run_benchmark(BrightBoxTracker(), sequences, out, tracker_name="bright", dataset="got10k", split="test",
                  progress=False)
    return root, out


def test_sequence_names_with_glob_characters_are_packed(tmp_path, capsys):
    from lorat_plugin.cli import main

    names = ["seq[1]", "seq1", "star*", "what?"]  # as globs, seq[1] would match seq1 and miss itself
    root, out = _test_split_run(tmp_path, names)
    with zipfile.ZipFile(out / "bright_got10k.zip") as archive:  # the runner's own zip
        assert {m.split("/")[0] for m in archive.namelist()} == set(names)
    assert main(["pack", "--format", "got10k", str(out), "-o", str(tmp_path / "sub.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "sub.zip") as archive:
        assert sorted(archive.namelist()) == sorted(
            [f"{n}/" for n in names] + [f"{n}/{n}_001.txt" for n in names] + [f"{n}/{n}_time.txt" for n in names])
    assert f"wrote {tmp_path / 'sub.zip'}" in capsys.readouterr().out
    sequences = load_dataset("got10k", root, "test")
    assert sorted(load_results(out / "GOT-10k" / "bright", "got10k", sequences).runs) == sorted(names)


def test_pack_fails_naming_the_sequences_of_the_run_without_results(tmp_path, capsys):
    from lorat_plugin.cli import main

    _, out = _test_split_run(tmp_path, ["GOT-10k_Test_000001", "GOT-10k_Test_000002", "GOT-10k_Test_000003"])
    for name in ("GOT-10k_Test_000001", "GOT-10k_Test_000003"):  # e.g. failed: no record, no layout files
        record_path(out, name, 1).unlink()
        shutil.rmtree(out / "GOT-10k" / "bright" / name)
    assert main(["pack", "--format", "got10k", str(out), "-o", str(tmp_path / "sub.zip")]) == 2
    error = capsys.readouterr().err
    assert "2 of 3 sequences have no results" in error and "GOT-10k_Test_000001, GOT-10k_Test_000003" in error
    assert not (tmp_path / "sub.zip").exists()


def test_pack_checks_the_zip_against_the_run_before_saying_wrote(tmp_path, capsys, monkeypatch):
    from lorat_plugin.cli import main
    from lorat_plugin.evaluation import formats

    _, out = _test_split_run(tmp_path, ["GOT-10k_Test_000001", "GOT-10k_Test_000002"])
    write_zip = formats.write_zip

    def losing_one(path, members):  # a zip writer that drops a sequence's files
        return write_zip(path, {k: v for k, v in members.items() if not k.startswith("GOT-10k_Test_000002/")})

    monkeypatch.setattr(formats, "write_zip", losing_one)
    assert main(["pack", "--format", "got10k", str(out), "-o", str(tmp_path / "sub.zip")]) == 2
    captured = capsys.readouterr()
    assert "1 of 2 sequences are not in the zip: GOT-10k_Test_000002" in captured.err
    assert "wrote" not in captured.out and not (tmp_path / "sub.zip").exists()


def test_report_per_sequence_escapes_control_characters_in_names(tmp_path):
    """A tracker or sequence name with terminal escapes or a newline is printed escaped, on its own line: it cannot
    recolour the table, set the terminal's title or break the table (report.html escapes for HTML itself)."""
    from lorat_plugin.evaluation import render_table

    hostile = "seq\x1b[31mred\x1b]0;title\x07\nnext"
    text = render_table({hostile: {"AUC": 50.0}, "plain": {"AUC": 40.0}}, header=["tracker \x1b[2J"], first="sequence")
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in render_table({"a\u202eb": {"x": 1.0}})
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0] == "tracker \\x1b[2J"
    assert lines[2].startswith("seq\\x1b[31mred\\x1b]0;title\\x07\\nnext") and lines[2].endswith("50.00")
    assert len(lines[2]) == len(lines[3])  # still one aligned table


def test_a_tracker_name_starting_with_an_underscore_keeps_its_legend_entry():
    from lorat_plugin.evaluation.plots import legend_label

    assert legend_label("_script_alert_1") == " _script_alert_1" and legend_label("LoRAT") == "LoRAT"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label=legend_label("_hidden"))
    assert [t.get_text() for t in ax.legend().get_texts()] == [" _hidden"]
    plt.close(fig)
