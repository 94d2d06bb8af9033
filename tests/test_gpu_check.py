"""benchmarks/gpu_check.py on a CPU: --help lists the checks, no CUDA is one line, and a dry run with tiny models
(hidden ``--device cpu --tiny``) goes through every check's plumbing and writes the JSON and the tables."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_check.py"
CHECK_NAMES = ("fps", "graphs", "batch", "fp16", "train", "full", "ddp-compile", "fps-compiled")


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # this test means a machine without CUDA
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/gpu_check.py` has it (train_speed beside)
    import gpu_check
    return gpu_check


def test_help_lists_every_check_and_no_cuda_is_one_line(tmp_path: Path) -> None:
    shown = run_script("--help")
    assert shown.returncode == 0
    for name in CHECK_NAMES:
        assert f"  {name} " in shown.stdout
    assert "--tiny" not in shown.stdout  # the dry run is for tests
    refused = run_script("--out", str(tmp_path / "out"))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "no CUDA device" in refused.stderr
    assert not (tmp_path / "out").exists()


def test_a_cpu_dry_run_goes_through_every_check(tmp_path: Path, gpu_check, capsys) -> None:
    assert list(gpu_check.CHECKS) == list(CHECK_NAMES)
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    statuses = {name: check["status"] for name, check in report["checks"].items()}
    assert statuses == {**{name: "ok" for name in CHECK_NAMES}, "fps-compiled": statuses["fps-compiled"]}
    assert statuses["fps-compiled"].startswith("skipped")
    fps = report["checks"]["fps"]["rows"]
    assert {(r["variant"], r["batch"]) for r in fps} == {("B-224", 1), ("B-224", 4), ("L-224", 1), ("L-224", 4)}
    assert all(r["network fps"] > 0 and r["tracker fps"] > 0 for r in fps)
    assert [r["variant"] for r in report["checks"]["fp16"]["rows"]] == ["B-224"] * 2 + ["L-224"] * 2 + ["g-378"] * 2
    train = report["checks"]["train"]["rows"]
    assert [r["variant"] for r in train] == ["B-224", "g-224"] and all(r["skipped steps"] == 0 for r in train)
    full = report["checks"]["full"]["rows"]
    assert full[1]["tuning"] == "full" and full[1]["trainable M"] > full[0]["trainable M"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert "### fp16: ok" in table and "| variant | path | score logits (rel.) |" in table
    assert "every check that ran passed" in capsys.readouterr().err


def test_a_failed_check_is_named_and_the_exit_is_non_zero(tmp_path: Path, gpu_check, capsys, monkeypatch) -> None:
    monkeypatch.setitem(gpu_check.FP16_TOLERANCE, "score", 0.0)  # no fp16 network is that exact
    assert gpu_check.main(["--device", "cpu", "--tiny", "--only", "fp16,graphs", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(report["checks"]) == ["fp16", "graphs"]
    assert report["checks"]["fp16"]["status"].startswith("FAILED: CheckFailed: B-224 stored fp16 beyond")
    assert report["checks"]["graphs"]["status"] == "ok"
    assert "gpu_check: failed: fp16 " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.main(["--only", "nonsense", "--out", str(tmp_path)])
