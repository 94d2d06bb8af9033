"""The real VOT toolkit end to end, offline: `lorat vot-workspace`, then `vot evaluate lorat` and `vot analysis`,
as a user types them, on sequences generated here and a tiny generated model (what is tested is the integration).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("vot", reason="the VOT toolkit is not installed (pip install 'lorat-plugin[vot]')")
pytest.importorskip("trax", reason="vot-trax is not installed (pip install 'lorat-plugin[vot]')")

from vot_data import object_boxes, write_dataset  # noqa: E402

from lorat_plugin.cli import main as lorat  # noqa: E402

pytestmark = pytest.mark.slow


def vot_command() -> list[str]:
    """The `vot` console script of this environment, as users run it (else `python -m vot`)."""
    script = Path(sys.executable).with_name("vot")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "vot"]


def run_vot(args: list[str], tmp_path: Path, timeout: float = 300, cwd: Path | None = None,
            **lorat_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORAT_", "VOT_"))}
    env.update(lorat_env)
    # The toolkit runs each tracker in a fresh directory under TMPDIR; keep those inside the test's folder.
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update(TMPDIR=str(tmp_path / "tmp"), MPLBACKEND="Agg")
    result = subprocess.run(vot_command() + args, capture_output=True, text=True, timeout=timeout, env=env,
                            cwd=cwd or tmp_path)
    return result


def lorat_results(workspace: Path) -> Path:
    """The `lorat` entry's results folder: results/lorat@<its model's identity> (the entry's tracker version)."""
    from vot.tracker import Registry

    entry = Registry([str(workspace / "trackers.ini")], root=str(workspace))["lorat"]
    return workspace / "results" / entry.reference


def analysis(workspace: Path, name: str) -> dict:
    return json.loads((workspace / "analysis" / f"{name}.json").read_text())


def results_of(data: dict, experiment: str) -> dict[str, list]:
    """analysis name -> the tracker's tuple (positional, in the order of the stack's analyses)."""
    block = data["results"][experiment]
    names = [a["name"] for a in block["parameters"]["analyses"]]
    return {name: values[0] for name, values in zip(names, block["results"])}


def analyse_baseline(ws: Path, tmp_path: Path, name: str, sequences: set[str]) -> tuple[dict, tuple[float, ...]]:
    """`vot analysis --name NAME` of the `lorat` entry: the analysis, and the baseline's EAO, accuracy, robustness."""
    run = run_vot(["analysis", "--workspace", str(ws), "lorat", "--name", name], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    data = analysis(ws, name)
    assert set(data["sequences"]) == sequences
    baseline = results_of(data, "baseline")
    eao, = baseline["eaoscore"]
    accuracy, robustness = baseline["ar"][:2]
    return data, (eao, accuracy, robustness)


def test_box_stack_with_multistart(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """vot2022/shorttermbox: baseline (multistart, from every anchor), realtime, unsupervised; EAO, A, R."""
    anchors = {"car": [0, 5], "dog": [0]}
    source = write_dataset(tmp_path / "data", {
        "car": dict(objects=[object_boxes(10, (20, 20), (3, 2), (24, 18))], anchors=anchors["car"], seed=1),
        "dog": dict(objects=[object_boxes(8, (80, 50), (-2, -1), (20, 20))], anchors=anchors["dog"], seed=2)})
    ws = tmp_path / "ws"
    assert lorat(["vot-workspace", str(ws), "--stack", "vot2022/shorttermbox", "--sequences", str(source),
                  "--checkpoint", str(tiny_checkpoint)]) == 0

    run = run_vot(["evaluate", "--workspace", str(ws), "lorat"], tmp_path)
    assert "Evaluation concluded successfuly" in run.stdout + run.stderr, run.stdout + run.stderr
    results = lorat_results(ws)
    for sequence, frames in anchors.items():
        for experiment in ("baseline", "realtime"):
            for anchor in frames:
                assert (results / experiment / sequence / f"{sequence}_{anchor:08d}.bin").is_file()
                confidence = results / experiment / sequence / f"{sequence}_{anchor:08d}_confidence.value"
                assert confidence.is_file()
        assert (results / "unsupervised" / sequence / f"{sequence}_001.bin").is_file()

    data, (eao, accuracy, robustness) = analyse_baseline(ws, tmp_path, "stb", set(anchors))
    assert math.isfinite(eao) and 0 <= accuracy <= 1 and 0 <= robustness <= 1
    unsupervised, = results_of(data, "unsupervised")["accuracy"]
    assert 0 <= unsupervised <= 1

    run = run_vot(["report", "--workspace", str(ws), "lorat", "--name", "stb"], tmp_path)
    assert run.returncode == 0 and (ws / "reports" / "stb" / "report.html").is_file(), run.stdout + run.stderr


def scaled_stack(path: Path, name: str, low: int, high: int) -> Path:
    """A copy of the installed stack ``name`` with every EAO interval (``low``/``high``) replaced: the VOT2022 stacks
    score EAO over frames 115-755, longer than a fast test's sequences."""
    import yaml
    from vot.stack import resolve_stack

    stack = yaml.safe_load(Path(resolve_stack(name)).read_text())
    for experiment in stack["experiments"].values():
        for analysis_spec in experiment.get("analyses", []):
            if "high" in analysis_spec:
                analysis_spec["high"] = high
            if "low" in analysis_spec:
                analysis_spec["low"] = low
    path.write_text(yaml.safe_dump(stack))
    return path


def test_generated_vot_benchmark_through_the_short_term_stack(tmp_path: Path) -> None:
    """`lorat make-benchmark B --layout vot`, `lorat vot-workspace` for vot2022/shorttermbox, then the toolkit's
    evaluate, analysis and report with the demo model: EAO, accuracy and robustness come out in (0, 1]."""
    from lorat_plugin.model.sources import demo_checkpoint

    bench = tmp_path / "bench"
    assert lorat(["make-benchmark", str(bench), "--layout", "vot", "--sequences", "1", "--frames", "55",
                  "--size", "160x120", "--seed", "3"]) == 0
    names = (bench / "list.txt").read_text().split()
    anchors = [int(v) for v in (bench / names[0] / "anchor.value").read_text().split()]
    assert anchors[0] == 1 and sum(anchors) == 2  # frame 1 and (the target present) about 50 frames later
    checkpoint = ["--checkpoint", str(demo_checkpoint()), "--device", "cpu"]
    # the default short-term stack takes the generated sequences as they are (anchors on annotated frames)
    assert lorat(["vot-workspace", str(tmp_path / "ws-stb"), "--stack", "vot2022/shorttermbox",
                  "--sequences-dir", str(bench), *checkpoint]) == 0
    # ... and is run here with its EAO interval scaled to a 55-frame sequence (115-755 -> 5-50)
    stack = scaled_stack(tmp_path / "shorttermbox-short.yaml", "vot2022/shorttermbox", low=5, high=50)
    ws = tmp_path / "ws"
    assert lorat(["vot-workspace", str(ws), "--stack", str(stack), "--sequences-dir", str(bench), *checkpoint]) == 0
    run = run_vot(["evaluate", "--workspace", str(ws), "lorat"], tmp_path)
    assert "Evaluation concluded successfuly" in run.stdout + run.stderr, run.stdout + run.stderr

    _, scores = analyse_baseline(ws, tmp_path, "gen", set(names))
    for score in scores:
        assert math.isfinite(score) and 0 < score <= 1, scores

    run = run_vot(["report", "--workspace", str(ws), "lorat", "--name", "gen"], tmp_path)
    report = ws / "reports" / "gen" / "report.html"
    assert run.returncode == 0 and report.is_file(), run.stdout + run.stderr
    assert "EAO" in report.read_text() or "eao" in report.read_text().lower()


def test_multiobject_stack_with_masks(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """tests/multiobject (VOTS style, mask ground truth): both objects in one session, masks reported."""
    source = write_dataset(tmp_path / "data", {"pair": dict(objects=[
        object_boxes(8, (10, 10), (3, 2), (24, 18)), object_boxes(8, (90, 60), (-2, -1), (16, 16))], masks=True)})
    ws = tmp_path / "ws"
    assert lorat(["vot-workspace", str(ws), "--stack", "tests/multiobject", "--sequences", str(source),
                  "--checkpoint", str(tiny_checkpoint)]) == 0

    run = run_vot(["evaluate", "--workspace", str(ws), "lorat"], tmp_path)
    assert "Evaluation concluded successfuly" in run.stdout + run.stderr, run.stdout + run.stderr
    from vot.region import Mask
    from vot.region.io import read_trajectory
    for obj in ("1", "2"):
        trajectory = read_trajectory(str(lorat_results(ws) / "baseline" / "pair" / f"pair_{obj}_001.bin"))
        assert len(trajectory) == 8 and all(isinstance(region, Mask) for region in trajectory[1:])

    run = run_vot(["analysis", "--workspace", str(ws), "lorat", "--name", "mo"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    quality, = results_of(analysis(ws, "mo"), "baseline")["Quality"]
    assert 0 <= quality <= 1


def test_broken_weights_path_fails_fast_with_the_message(tmp_path: Path, tiny_checkpoint: Path) -> None:
    source = write_dataset(tmp_path / "data", {"car": dict(objects=[object_boxes(6, (20, 20), (3, 2), (24, 18))])})
    ws = tmp_path / "ws"
    missing = tmp_path / "weights" / "base.bin"
    assert lorat(["vot-workspace", str(ws), "--stack", "tests/basic", "--sequences", str(source),
                  "--checkpoint", str(missing)]) == 2  # refused here, with the same "not found" as everywhere
    missing.parent.mkdir()
    shutil.copy(tiny_checkpoint, missing)
    assert lorat(["vot-workspace", str(ws), "--stack", "tests/basic", "--sequences-dir", str(source),
                  "--checkpoint", str(missing)]) == 0
    missing.unlink()  # the weights go away after the workspace was prepared

    started = time.monotonic()
    run = run_vot(["evaluate", "--workspace", str(ws), "lorat"], tmp_path, timeout=120)
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    assert f"cannot load the model: LoRAT checkpoint not found: {missing}" in output, output
    assert "did not reply" not in output and elapsed < 60  # the tracker's own message, not the 300 s timeout
    logs = list((ws / "logs").glob("lorat_*.log"))
    assert logs and str(missing) in logs[0].read_text()
    assert not (lorat_results(ws) / "baseline" / "car" / "car_001.bin").exists()
    shutil.rmtree(tmp_path / "tmp", ignore_errors=True)


def test_hand_written_workspace_with_the_packaged_registry(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """docs/vot.md's offline recipe without `lorat vot-workspace`: config.yaml needs `registry: []` (0.7.4)."""
    from lorat_plugin.trackers.vot_registry import registry_template

    ws = tmp_path / "ws"
    write_dataset(ws / "sequences", {"car": dict(objects=[object_boxes(5, (20, 20), (3, 2), (24, 18))])})
    (ws / "config.yaml").write_text("stack: tests/basic\nsequences: sequences\n")
    args = ["--registry", str(registry_template()), "evaluate", "--workspace", ".", "lorat"]
    refused = run_vot(args, tmp_path, cwd=ws, LORAT_CHECKPOINT=str(tiny_checkpoint))
    assert "registry" in refused.stdout + refused.stderr and not (ws / "results" / "lorat").exists()
    (ws / "config.yaml").write_text("registry: []\nstack: tests/basic\nsequences: sequences\n")
    run = run_vot(args, tmp_path, cwd=ws, LORAT_CHECKPOINT=str(tiny_checkpoint))
    assert "Evaluation concluded successfuly" in run.stdout + run.stderr, run.stdout + run.stderr
    assert (ws / "results" / "lorat" / "baseline" / "car" / "car_001.bin").is_file()


def test_another_precision_tracks_again_and_keeps_the_earlier_results(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """`lorat vot-workspace` again with another --dtype, then `vot evaluate lorat`: the toolkit reuses whatever the
    tracker's results folder holds, so each model gets its own (the entry's version) and the new one is tracked."""
    source = write_dataset(tmp_path / "data", {"car": dict(objects=[object_boxes(6, (20, 20), (3, 2), (24, 18))])})
    ws = tmp_path / "ws"
    prepare = ["vot-workspace", str(ws), "--stack", "tests/basic", "--sequences-dir", str(source),
               "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    results = {}
    for dtype in ("fp32", "bf16"):
        assert lorat([*prepare, "--dtype", dtype]) == 0
        folder = lorat_results(ws)
        assert folder.name.startswith("lorat@LoRAT-tiny-") and folder.name.endswith(f"-{dtype}")
        run = run_vot(["evaluate", "--workspace", str(ws), "lorat"], tmp_path)
        assert "Evaluation concluded successfuly" in run.stdout + run.stderr, run.stdout + run.stderr
        results[dtype] = folder / "baseline" / "car" / "car_001.bin"
        assert results[dtype].is_file()  # tracked now (only the tracker writes this folder)
        if dtype == "fp32":
            fp32_bytes = results["fp32"].read_bytes()
    assert results["fp32"].read_bytes() == fp32_bytes  # the earlier model's results stay as they were
    assert not (ws / "results" / "lorat").exists()

    # both models side by side: `lorat@` is every version the workspace holds
    run = run_vot(["analysis", "--workspace", str(ws), "lorat@", "--name", "both"], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    trackers = analysis(ws, "both")["trackers"]
    assert len(trackers) == 2, trackers
