"""`lorat pack`: only a test split of the server's own benchmark is packed, and only the zip is written."""
from __future__ import annotations

import zipfile
from pathlib import Path

from evaluation_support import BrightBoxTracker, make_benchmark

from lorat_plugin.cli import main
from lorat_plugin.data.datasets import load_dataset
from lorat_plugin.evaluation import run_benchmark


def _run(tmp_path: Path, split: str, name: str = "run") -> Path:
    root = make_benchmark(tmp_path / f"GOT-{split}", "got10k", 2, length=5, split=split)
    out = tmp_path / name
    run_benchmark(BrightBoxTracker(), load_dataset("got10k", root, split), out, tracker_name="bright",
                  dataset="got10k", split=split, root=root, progress=False)
    return out


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_val_and_train_runs_are_refused_for_the_test_server(tmp_path, capsys):
    for split in ("val", "train"):
        out = _run(tmp_path, split, f"run-{split}")
        zip_path = tmp_path / f"{split}.zip"
        assert main(["pack", "--format", "got10k", str(out), "-o", str(zip_path)]) == 2
        error = capsys.readouterr().err.strip()
        assert f"run of the got10k {split} split" in error and "test split only" in error
        assert len(error.splitlines()) == 1 and "Traceback" not in error and not zip_path.exists()


def test_a_run_of_another_benchmark_is_refused(tmp_path, capsys):
    out = _run(tmp_path, "test")
    assert main(["pack", "--format", "trackingnet", str(out), "-o", str(tmp_path / "tn.zip")]) == 2
    error = capsys.readouterr().err.strip()
    assert "is a run of got10k, not trackingnet" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "tn.zip").exists()


def test_pack_writes_only_the_zip_unless_asked_to_keep_the_layout(tmp_path, capsys):
    out = _run(tmp_path, "test")
    layout = out / "GOT-10k" / "bright"
    for sequence_folder in layout.iterdir():  # what an earlier export left: pack must not need or rewrite it
        for file in sequence_folder.iterdir():
            file.unlink()
        sequence_folder.rmdir()
    before = _files(out)
    assert main(["pack", "--format", "got10k", str(out), "-o", str(tmp_path / "sub.zip")]) == 0
    assert _files(out) == before  # nothing written into the evaluation folder
    with zipfile.ZipFile(tmp_path / "sub.zip") as archive:
        assert {m.split("/")[0] for m in archive.namelist()} == {"GOT-10k_Test_000001", "GOT-10k_Test_000002"}
    assert main(["pack", "--format", "got10k", str(out), "-o", str(tmp_path / "kept.zip"), "--keep-layout"]) == 0
    assert sorted(p.name for p in layout.iterdir()) == ["GOT-10k_Test_000001", "GOT-10k_Test_000002"]
    assert "layout kept in" in capsys.readouterr().out
