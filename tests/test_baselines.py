"""Classical baselines: OpenCV CSRT/KCF and the static box behind got10k's interface and the batch adapter."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("got10k")
cv2 = pytest.importorskip("cv2")

from lorat_plugin.geometry import rect_iou  # noqa: E402
from lorat_plugin.trackers import baselines  # noqa: E402
from lorat_plugin.trackers.baselines import (  # noqa: E402
    OpenCVTracker, StaticBoxTracker, baseline)


@pytest.fixture
def moving_patch(moving_video):
    """``n`` frames of a textured 24 x 16 patch with a red centre sliding right over noise, and its exact boxes."""
    return lambda n=20: moving_video(n, box=(30, 50, 24, 16), step=(2, 0), textured=True)


@pytest.mark.parametrize("algorithm", ["csrt", "kcf"])
def test_opencv_trackers_follow_a_moving_patch(algorithm, moving_patch):
    images, truth = moving_patch()
    tracker = OpenCVTracker(algorithm)
    assert tracker.name == algorithm.upper() and tracker.is_deterministic
    tracker.init(images[0], truth[0])
    boxes = np.stack([truth[0]] + [tracker.update(image) for image in images[1:]])
    assert rect_iou(boxes, truth).mean() > 0.6
    assert tracker.score == 1.0 and tracker.failures == 0


def test_got10k_track_contract_with_pil_images_and_paths(tmp_path, moving_patch):
    from PIL import Image

    images, truth = moving_patch(6)
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"{i:08d}.jpg")
        Image.fromarray(image).save(files[-1], quality=95)
    tracker = OpenCVTracker("kcf")
    boxes, times = tracker.track([str(f) for f in files], truth[0])  # got10k's own loop: PIL RGB images
    assert boxes.shape == (6, 4) and times.shape == (6,)
    np.testing.assert_array_equal(boxes[0], truth[0])
    assert rect_iou(boxes, truth).mean() > 0.5
    tracker.init(str(files[0]), truth[0])  # file paths (ExperimentVOT with read_image=False)
    assert tracker.update(str(files[1])).shape == (4,)


class _LosingTracker:
    """Stands in for an OpenCV tracker that loses the target, then raises."""

    def __init__(self):
        self.calls = 0

    def init(self, image, box):
        self.box = box

    def update(self, image):
        self.calls += 1
        if self.calls == 1:
            return True, (5, 6, 7, 8)
        if self.calls == 2:
            return False, (0, 0, 0, 0)
        raise cv2.error("simulated OpenCV failure")


def test_lost_target_keeps_the_last_box_with_score_zero(monkeypatch, moving_patch):
    images, truth = moving_patch(5)
    tracker = OpenCVTracker("kcf")
    monkeypatch.setattr(tracker, "_create", _LosingTracker)
    tracker.init(images[0], truth[0])
    np.testing.assert_array_equal(tracker.update(images[1]), [5, 6, 7, 8])
    assert tracker.score == 1.0
    np.testing.assert_array_equal(tracker.update(images[2]), [5, 6, 7, 8])  # ok=False
    assert tracker.score == 0.0
    np.testing.assert_array_equal(tracker.update(images[3]), [5, 6, 7, 8])  # cv2.error
    assert tracker.score == 0.0 and tracker.failures == 2


def test_failed_init_reports_the_init_box(monkeypatch, caplog, moving_patch):
    class Refusing:
        def init(self, image, box):
            raise cv2.error("simulated init failure")

    images, truth = moving_patch(3)
    tracker = OpenCVTracker("csrt")
    monkeypatch.setattr(tracker, "_create", Refusing)
    tracker.init(images[0], truth[0])
    assert "could not initialise" in caplog.text
    np.testing.assert_array_equal(tracker.update(images[1]), truth[0])
    assert tracker.score == 0.0


def test_bad_input_is_refused(moving_patch):
    images, truth = moving_patch(2)
    with pytest.raises(ValueError, match="init box"):
        OpenCVTracker("kcf").init(images[0], [1, 2, 0, 5])
    with pytest.raises(ValueError, match="init box"):
        StaticBoxTracker().init(images[0], [1, 2, np.nan, 5])
    with pytest.raises(RuntimeError, match="before init"):
        OpenCVTracker("kcf").update(images[0])
    with pytest.raises(ValueError, match="unknown OpenCV tracker"):
        OpenCVTracker("mosse-ish")
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline("siamfc")
    tracker = OpenCVTracker("csrt")  # a box entirely outside the image cannot initialise OpenCV: static, score 0
    tracker.init(images[0], [500, 500, 10, 10])
    np.testing.assert_array_equal(tracker.update(images[1]), [500, 500, 10, 10])
    assert tracker.score == 0.0


def test_opencv_factory_finds_the_trackers_in_this_build():
    for algorithm in ("csrt", "kcf"):
        assert callable(baselines.opencv_factory(algorithm))


def _fake_opencv(monkeypatch, distributions: dict[str, str], cv2_module) -> None:
    """Pretend ``distributions`` (name -> version) are installed and ``import cv2`` gives ``cv2_module``."""
    import importlib.metadata
    import sys

    def version(name):
        if name in distributions:
            return distributions[name]
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setitem(sys.modules, "cv2", cv2_module)  # None: the import fails


def _cv2(*trackers: str, legacy: bool = False):
    import types

    module = types.ModuleType("cv2")
    module.__version__ = "4.10.0"
    namespace = module
    if legacy:
        namespace = module.legacy = types.ModuleType("cv2.legacy")
    for name in trackers:
        setattr(namespace, name, lambda name=name: name)
    return module


FIX = "Fix: pip install --force-reinstall --no-deps opencv-contrib-python-headless"


@pytest.mark.parametrize("distributions, importable, listed", [
    ({"opencv-contrib-python-headless": "4.10.0", "opencv-python": "4.10.0"}, True,
     "opencv-python 4.10.0, opencv-contrib-python-headless 4.10.0"),  # vot's wheel over the contrib build
    ({"opencv-python": "4.10.0", "opencv-python-headless": "4.9.0"}, True,
     "opencv-python 4.10.0, opencv-python-headless 4.9.0"),
    ({"opencv-contrib-python": "4.10.0"}, False, "opencv-contrib-python 4.10.0"),  # a damaged cv2
    ({}, False, "none"),
])
def test_missing_contrib_trackers_name_the_installed_opencv_and_the_fixing_command(monkeypatch, distributions,
                                                                                   importable, listed):
    _fake_opencv(monkeypatch, distributions, _cv2() if importable else None)
    with pytest.raises(ImportError) as error:
        OpenCVTracker("csrt")
    message = str(error.value)
    assert f"installed OpenCV wheels: {listed} (" in message and message.endswith(FIX) and "\n" not in message


@pytest.mark.parametrize("legacy", [False, True])
def test_contrib_trackers_work_whatever_else_is_installed(monkeypatch, legacy):
    both = {"opencv-python": "4.10.0", "opencv-contrib-python-headless": "4.10.0"}
    _fake_opencv(monkeypatch, both, _cv2("TrackerCSRT_create", "TrackerKCF_create", legacy=legacy))
    assert baselines.opencv_factory("kcf")() == "TrackerKCF_create"


def test_batch_adapter_runs_independent_trackers(moving_patch):
    images, truth = moving_patch()
    shifted = [np.roll(image, 20, axis=0) for image in images]
    truth_shifted = truth + [0, 20, 0, 0]
    adapter = baseline("csrt")
    assert adapter.name == "CSRT"
    states = adapter.initialize([images[0], shifted[0]], np.stack([truth[0], truth_shifted[0]]))
    outputs = [np.stack([truth[0], truth_shifted[0]])]
    for a, b in zip(images[1:], shifted[1:]):
        boxes, scores = adapter.track(states, [a, b])
        assert boxes.shape == (2, 4) and scores.shape == (2,)
        outputs.append(boxes)
    outputs = np.stack(outputs)  # T x 2 x 4
    assert rect_iou(outputs[:, 0], truth).mean() > 0.6 and rect_iou(outputs[:, 1], truth_shifted).mean() > 0.6
    assert states[0].tracker is not states[1].tracker
    static = baseline("static")
    states = static.initialize(images[:1], truth[:1])
    boxes, scores = static.track(states, images[5:6])
    np.testing.assert_array_equal(boxes[0], truth[0])
    assert scores[0] == 1.0
    with pytest.raises(ValueError, match="frames but"):
        static.initialize(images[:2], truth[:1])


def test_baselines_run_through_the_evaluation_harness(tmp_path):
    """The harness runs a baseline exactly as it runs LoRAT: records, GOT-10k result files, metrics."""
    pytest.importorskip("skimage")
    from lorat_plugin.data.datasets import load_dataset
    from lorat_plugin.demo.procedural import make_benchmark
    from lorat_plugin.evaluation import evaluate, load_results, run_benchmark

    make_benchmark(tmp_path / "bench", sequences=2, frames=12, size=(160, 120), seed=0)
    sequences = load_dataset("got10k", tmp_path / "bench", split="val")
    results = []
    for name in ("static", "kcf"):
        tracker = baseline(name)
        run_benchmark(tracker, sequences, tmp_path / tracker.name, tracker_name=tracker.name, progress=False)
        results.append(load_results(tmp_path / tracker.name, "got10k", sequences))
    metrics = evaluate("got10k", sequences, results)["trackers"]
    assert set(metrics) == {"StaticBox", "KCF"}
    for entry in metrics.values():
        assert 0.0 <= entry["got10k"]["overall"]["ao"] <= 1.0
    written = sorted(p.name for p in (tmp_path / "StaticBox").rglob("*_001.txt"))
    assert written == [f"{s.name}_001.txt" for s in sequences]
    static_boxes = np.loadtxt(next((tmp_path / "StaticBox").rglob("*_001.txt")), delimiter=",")
    assert np.allclose(static_boxes, static_boxes[0], atol=1e-3)  # the init box on every frame
