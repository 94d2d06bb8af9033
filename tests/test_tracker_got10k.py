"""LoRATTracker under the real got10k toolkit: ExperimentGOT10k and the (offline) OTB experiment, run + report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lorat_plugin.data.datasets.write import SequenceData, write_dataset
from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.model import build_model

got10k = pytest.importorskip("got10k")
from got10k.experiments import ExperimentGOT10k  # noqa: E402

from lorat_plugin.trackers import LoRATTracker, OfflineExperimentOTB  # noqa: E402


def _frames(n: int, size: tuple[int, int], seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    return moving_box_video(n, size, box=(10, 8, 20, 14), step=(2, 1), seed=seed)


def write_got10k_val(root: Path, names=("GOT-10k_Val_000001", "GOT-10k_Val_000002"), n: int = 6) -> Path:
    """The GOT-10k val layout got10k 0.1.3 reads: list.txt, frames, groundtruth.txt, meta_info.ini and labels."""
    sequences = []
    for seed, name in enumerate(names):
        frames, boxes = _frames(n, (96, 72), seed)
        cover = np.full(n, 8)
        cover[3] = 0  # one frame fully occluded: got10k drops it from the score
        sequences.append(SequenceData(name, frames, boxes, cover > 0, {"cover": cover, "class": "red box"}))
    return write_dataset(root, "got10k", sequences, split="val", box_format="%.4f")


def write_otb(root: Path, names=("Basketball", "Bolt"), n: int = 5) -> Path:
    """OTB layout (names must be on got10k's hard-coded OTB2015 list); boxes 1-based as in the real files."""
    sequences = [SequenceData(name, *_frames(n, (80, 64), seed + 10)) for seed, name in enumerate(names)]
    return write_dataset(root, "otb", sequences, box_format="%d")


@pytest.fixture
def tiny_tracker(tiny_checkpoint: Path) -> LoRATTracker:
    return LoRATTracker(build_model(checkpoint=tiny_checkpoint, merge=True), device="cpu", name="LoRAT-tiny")


def test_experiment_got10k_run_and_report(tmp_path: Path, tiny_tracker: LoRATTracker) -> None:
    root = write_got10k_val(tmp_path / "GOT-10k")
    experiment = ExperimentGOT10k(str(root), subset="val", result_dir=str(tmp_path / "results"),
                                  report_dir=str(tmp_path / "reports"))
    experiment.run(tiny_tracker)
    for name in ("GOT-10k_Val_000001", "GOT-10k_Val_000002"):
        folder = tmp_path / "results" / "GOT-10k" / "LoRAT-tiny" / name
        boxes = np.loadtxt(folder / f"{name}_001.txt", delimiter=",")
        assert boxes.shape == (6, 4) and np.isfinite(boxes).all()
        assert not (folder / f"{name}_002.txt").exists()  # deterministic: one repetition
        assert (folder / f"{name}_time.txt").is_file()
    performance = experiment.report([tiny_tracker.name])
    report = json.loads((tmp_path / "reports" / "GOT-10k" / "LoRAT-tiny" / "performance.json").read_text())
    overall = report["LoRAT-tiny"]["overall"]
    assert 0 <= overall["ao"] <= 1 and len(overall["succ_curve"]) == 101
    assert performance["LoRAT-tiny"]["overall"]["ao"] == overall["ao"]
    assert (tmp_path / "reports" / "GOT-10k" / "LoRAT-tiny" / "success_plot.png").is_file()


def test_offline_otb_experiment_run_and_report(tmp_path: Path, tiny_checkpoint: Path) -> None:
    root = write_otb(tmp_path / "OTB")
    tracker = LoRATTracker(checkpoint=tiny_checkpoint, device="cpu", name="LoRAT-otb", one_based=True)
    experiment = OfflineExperimentOTB(root, version=2015, result_dir=str(tmp_path / "results"),
                                      report_dir=str(tmp_path / "reports"))
    experiment.run(tracker)
    for name in ("Basketball", "Bolt"):
        boxes = np.loadtxt(tmp_path / "results" / "OTB2015" / "LoRAT-otb" / f"{name}.txt", delimiter=",")
        gt = np.loadtxt(root / name / "groundtruth_rect.txt", delimiter=",")
        assert boxes.shape == (5, 4)
        np.testing.assert_allclose(boxes[0], gt[0])
    experiment.report([tracker.name])
    folder = tmp_path / "reports" / "OTB2015" / "LoRAT-otb"
    report = json.loads((folder / "performance.json").read_text())
    assert len(report["LoRAT-otb"]["overall"]["success_curve"]) == 21
    assert (folder / "success_plots.png").is_file() and (folder / "precision_plots.png").is_file()


def test_accepts_pil_numpy_gray_rgba_and_paths(tmp_path: Path, tiny_tracker: LoRATTracker) -> None:
    frames, boxes = _frames(3, (96, 72), 0)
    paths = {}
    for i in range(2):
        paths[id(frames[i])] = tmp_path / f"frame{i}.png"
        Image.fromarray(frames[i]).save(paths[id(frames[i])])
    results = {}
    for kind, convert in {"pil": Image.fromarray, "numpy": lambda f: f, "path": lambda f: str(paths[id(f)]),
                          "rgba": lambda f: np.dstack((f, np.full(f.shape[:2], 255, np.uint8)))}.items():
        tiny_tracker.init(convert(frames[0]), boxes[0])
        results[kind] = tiny_tracker.update(convert(frames[1]))
        assert np.asarray(results[kind]).shape == (4,) and 0 <= tiny_tracker.score <= 1
    for kind in ("numpy", "path", "rgba"):
        np.testing.assert_allclose(results[kind], results["pil"], atol=1e-5)
    tiny_tracker.init(frames[0][..., 0], boxes[0])  # grayscale
    assert np.isfinite(tiny_tracker.update(np.asarray(Image.fromarray(frames[1]).convert("L")))).all()


def test_one_based_boxes_are_shifted_both_ways(tiny_tracker: LoRATTracker, tiny_checkpoint: Path) -> None:
    frames, boxes = _frames(3, (96, 72), 0)
    one_based = LoRATTracker(build_model(checkpoint=tiny_checkpoint, merge=True), device="cpu", one_based=True)
    tiny_tracker.init(frames[0], boxes[0])
    one_based.init(frames[0], boxes[0] + (1, 1, 0, 0))
    np.testing.assert_allclose(one_based.update(frames[1]), tiny_tracker.update(frames[1]) + (1, 1, 0, 0))


def test_default_track_loop_and_misuse(tmp_path: Path, tiny_tracker: LoRATTracker, tiny_checkpoint: Path) -> None:
    frames, boxes = _frames(4, (96, 72), 3)
    files = []
    for i, frame in enumerate(frames):
        files.append(tmp_path / f"{i}.jpg")
        Image.fromarray(frame).save(files[-1])
    result, times = tiny_tracker.track([str(f) for f in files], boxes[0])
    assert result.shape == (4, 4) and (times >= 0).all()
    fresh = LoRATTracker(build_model(checkpoint=tiny_checkpoint, merge=True), device="cpu")
    with pytest.raises(RuntimeError, match="without a successful init"):
        fresh.update(frames[0])
    with pytest.raises(ValueError, match="zero or negative size"):
        fresh.init(frames[0], (10, 10, 0, 5))
    with pytest.raises(ValueError, match="either a built model"):
        LoRATTracker(build_model(checkpoint=tiny_checkpoint, merge=True), variant="B-224")


@pytest.mark.parametrize("bad_init", [(10, 10, 0, 5), (1, 2, 3), (500, 500, 10, 10)])
def test_update_after_a_failed_init_is_an_error(tiny_tracker: LoRATTracker, bad_init) -> None:
    """Never the previous sequence's box: a failed init leaves no state to track from."""
    frames, boxes = _frames(3, (96, 72), 0)
    tiny_tracker.init(frames[0], boxes[0])
    tiny_tracker.update(frames[1])
    with pytest.raises(ValueError):
        tiny_tracker.init(frames[0], bad_init)
    with pytest.raises(RuntimeError, match="without a successful init"):
        tiny_tracker.update(frames[2])
    assert np.isnan(tiny_tracker.score)


def test_default_name_is_the_model_identity(tiny_checkpoint: Path, tmp_path: Path, caplog) -> None:
    from lorat_plugin.environment import format_environment, run_environment
    from lorat_plugin.model.sources import ModelSpec

    caplog.set_level("INFO")
    tracker = LoRATTracker(checkpoint=tiny_checkpoint, device="cpu", dtype="fp32")
    identity = ModelSpec.resolve(checkpoint=tiny_checkpoint, env={}).identity("fp32")
    assert tracker.name == identity["name"] and tracker.name.startswith("LoRAT-tiny-") and tracker.identity == identity
    assert identity["name"] in caplog.text and "cpu" in caplog.text  # identity and backend in the log
    assert f"runs on: {format_environment(run_environment('cpu', batch_size=1, world_size=1))}" in caplog.text
    assert LoRATTracker(checkpoint=tiny_checkpoint, device="cpu", dtype="bf16").name.endswith("-bf16")
    assert LoRATTracker(checkpoint=tiny_checkpoint, device="cpu", name="mine").name == "mine"
    # a built model: named from its tensors, so two different models never share a results folder
    model = build_model(checkpoint=tiny_checkpoint, merge=True)
    built = LoRATTracker(model, device="cpu", dtype="fp32")
    assert built.name.startswith("LoRAT-model-") and built.name.endswith("-fp32")
    again = LoRATTracker(build_model(checkpoint=tiny_checkpoint, merge=True), device="cpu", dtype="fp32")
    assert again.name == built.name
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert LoRATTracker(model, device="cpu", dtype="fp32").name != built.name
