"""The procedural benchmark: reproducible, disjoint splits, exact ground truth, readable layouts."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("cv2")

from lorat_plugin.data.datasets import load_dataset  # noqa: E402
from lorat_plugin.demo.procedural import (  # noqa: E402
    MIN_VISIBLE, PHOTOGRAPHS, make_benchmark, plan_benchmark, render_sequence, split_photographs)
from lorat_plugin.demo.procedural.plan import CHALLENGES, plan_sequence  # noqa: E402
from lorat_plugin.demo.procedural.render import RenderedFrame  # noqa: E402

SIZE = (160, 120)


def _plan(index: int = 0, seed: int = 3, frames: int = 24, split: str = "test", size=SIZE):
    return plan_sequence(split=split, index=index, seed=seed, frames=frames, size=size,
                         photographs=split_photographs(split), name=f"s{index}")


def test_photographs_are_bundled_and_splits_disjoint():
    train, test = set(split_photographs("train")), set(split_photographs("test"))
    assert train and test and not train & test
    assert train | test == set(PHOTOGRAPHS)
    from lorat_plugin.demo.procedural.photos import coin_segments, horse_silhouette, load_photograph
    for name in PHOTOGRAPHS:  # offline: pooch is not needed for any of them
        image = load_photograph(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 150
    assert len(coin_segments()) >= 20
    horse = horse_silhouette()  # cropped to the silhouette: it touches all four sides
    assert horse[0].any() and horse[-1].any() and horse[:, 0].any() and horse[:, -1].any()


@pytest.mark.parametrize("split", ["train", "test"])
def test_sequences_use_only_their_split_photographs(split):
    allowed = set(split_photographs(split))
    for plan in plan_benchmark(split=split, sequences=12, frames=30, size=SIZE, seed=5):
        used = {plan.background, plan.target.photo} | {layer.photo for layer in plan.distractors + plan.occluders}
        assert used <= allowed, (plan.name, used - allowed)
        if split == "test":
            assert plan.target.shape != "horse"  # the horse silhouette belongs to the train split


def test_reproducible_and_independent_of_the_sequence_count():
    first = list(render_sequence(_plan(index=2)))
    again = list(render_sequence(_plan(index=2)))
    for a, b in zip(first, again):
        assert np.array_equal(a.image, b.image)
        assert a.visible_fraction == b.visible_fraction
        assert (a.box is None and b.box is None) or np.array_equal(a.box, b.box)
    few = plan_benchmark(split="test", sequences=2, frames=24, size=SIZE, seed=3)
    many = plan_benchmark(split="test", sequences=5, frames=24, size=SIZE, seed=3)
    assert np.array_equal(few[1].target.boxes, many[1].target.boxes)
    other_seed = plan_benchmark(split="test", sequences=2, frames=24, size=SIZE, seed=4)
    assert not np.array_equal(few[0].target.boxes, other_seed[0].target.boxes)


def test_challenges_are_all_exercised():
    seen = set()
    for plan in plan_benchmark(split="train", sequences=40, frames=40, size=SIZE, seed=0):
        seen.update(plan.challenges)
        if "occlusion" in plan.challenges:
            assert all(layer.photo != plan.target.photo for layer in plan.occluders)
        if "distractors" in plan.challenges:
            assert plan.distractors and all(d.photo == plan.target.photo for d in plan.distractors)
    assert seen == set(CHALLENGES)


def _without_blur_and_noise(plan):
    plan.target.exposure = 0.0
    plan.camera_exposure = 0.0
    plan.noise = 0.0
    for layer in plan.distractors + plan.occluders:
        layer.exposure = 0.0
    return plan


@pytest.mark.parametrize("index", [0, 1, 3, 6])
def test_ground_truth_box_is_where_the_target_pixels_are(index):
    """Render each frame with the target at its brightness and at zero brightness: the pixels that differ are the
    target's visible pixels. They must lie inside the ground-truth box and reach its sides unless cut off."""
    plan = _without_blur_and_noise(_plan(index=index, frames=30))
    dark = dataclasses.replace(plan, target=dataclasses.replace(plan.target, gain=np.zeros_like(plan.target.gain)))
    width, height = SIZE
    for t, (lit, unlit) in enumerate(zip(render_sequence(plan, with_masks=True), render_sequence(dark))):
        assert lit.visible_fraction <= lit.in_frame_fraction + 1e-6
        if t == 0:
            assert lit.present and lit.cover == 8 and not lit.cut_by_image
        diff = np.abs(lit.image.astype(int) - unlit.image.astype(int)).max(axis=2) > 12
        if not lit.present:
            assert lit.visible_fraction < MIN_VISIBLE
            assert diff.sum() <= max(3, 0.06 * lit.amodal_box[2] * lit.amodal_box[3])
            continue
        x, y, w, h = lit.box
        assert 0 <= x and 0 <= y and x + w <= width + 1e-9 and y + h <= height + 1e-9
        ys, xs = np.nonzero(diff)
        assert len(xs), f"frame {t}: a present target left no pixel"
        # every target pixel lies in the box (pixel i covers [i, i+1); one pixel of antialiasing slack)
        assert xs.min() >= x - 1 and xs.max() + 1 <= x + w + 1 and ys.min() >= y - 1 and ys.max() + 1 <= y + h + 1
        # the unoccluded target mask spans the box: its extent is the box, up to one pixel
        alpha = lit.target_alpha > 0.5
        if lit.visible_fraction >= 0.999:
            ay, ax = np.nonzero(alpha)
            assert abs(ax.min() - x) <= 1.0 and abs(ax.max() + 1 - (x + w)) <= 1.0
            assert abs(ay.min() - y) <= 1.0 and abs(ay.max() + 1 - (y + h)) <= 1.0


def test_labels_follow_visibility():
    frames = [RenderedFrame(image=None, box=np.array([1.0, 1, 5, 5]) if v >= MIN_VISIBLE else None,
                            amodal_box=np.array([x, 1, 5, 5]), visible_fraction=v, in_frame_fraction=f,
                            frame_size=(10, 10))
              for v, f, x in [(1.0, 1.0, 1.0), (0.5, 1.0, 1.0), (0.1, 1.0, 1.0), (0.0, 1.0, 1.0), (0.0, 0.0, 20.0),
                              (0.95, 0.95, 6.0)]]
    assert [f.cover for f in frames] == [8, 4, 1, 0, 0, 7]
    assert [f.full_occlusion for f in frames] == [False, False, False, True, False, False]
    assert [f.out_of_view for f in frames] == [False, False, False, False, True, False]
    assert [f.cut_by_image for f in frames] == [False, False, False, False, False, True]


def test_got10k_layout_is_readable_by_got10k_and_our_reader(tmp_path):
    bench = make_benchmark(tmp_path / "bench", split="test", sequences=3, frames=16, size=SIZE, seed=7)
    assert bench.subset == "val" and (tmp_path / "bench" / "val" / "list.txt").is_file()
    ours = load_dataset("got10k", tmp_path / "bench", split="val")
    assert [s.name for s in ours] == list(bench.names)
    for sequence, plan in zip(ours, bench.plans()):
        expected = list(render_sequence(plan))
        assert len(sequence) == 16 and sequence.frames[0].name == "00000001.jpg"
        for t, frame in enumerate(expected):
            assert bool(sequence.visible[t]) == frame.present
            assert sequence.attributes["cover"][t] == frame.cover
            if frame.present:
                np.testing.assert_allclose(sequence.boxes[t], frame.box, atol=6e-5)
        assert sequence.attributes["resolution"] == SIZE
        assert sequence.attributes["meta"]["target_photo"] == plan.target.photo
    got10k = pytest.importorskip("got10k.datasets")
    dataset = got10k.GOT10k(str(tmp_path / "bench"), subset="val", return_meta=True)
    files, anno, meta = dataset[0]
    assert len(files) == 16 and anno.shape == (16, 4)
    np.testing.assert_allclose(anno, np.nan_to_num(ours[0].boxes), atol=1e-9)
    assert meta["resolution"] == "(160, 120)" and len(meta["cover"]) == 16


def test_lasot_layout_is_readable(tmp_path):
    bench = make_benchmark(tmp_path / "lasot", split="test", sequences=3, frames=12, size=SIZE, seed=7,
                           layout="lasot")
    assert (tmp_path / "lasot" / "testing_set.txt").read_text().split() == list(bench.names)
    sequences = load_dataset("lasot", tmp_path / "lasot", split="test")
    same_plans = plan_benchmark(split="test", sequences=3, frames=12, size=SIZE, seed=7)
    for sequence, plan in zip(sequences, same_plans):
        assert sequence.name.rsplit("-", 1)[0] == plan.target.photo == sequence.attributes["class"]
        first = next(iter(render_sequence(plan)))
        np.testing.assert_allclose(sequence.boxes[0], first.box, atol=6e-5)  # 1-based on disk, 0-based read
        assert sequence.attributes["nlp"].startswith("a ")


def test_make_benchmark_resumes_and_refuses_to_mix(tmp_path):
    root = tmp_path / "b"
    first = make_benchmark(root, sequences=2, frames=8, size=SIZE, seed=1)
    folder = root / "val" / first.names[0]
    stamp = (folder / "00000001.jpg").stat().st_mtime_ns
    import shutil
    shutil.rmtree(root / "val" / first.names[1])  # sequence folders are complete or absent: an interrupted run
    again = make_benchmark(root, sequences=3, frames=8, size=SIZE, seed=1)
    assert (folder / "00000001.jpg").stat().st_mtime_ns == stamp  # kept, not re-rendered
    assert len(load_dataset("got10k", root, split="val")) == 3
    assert again.manifest["complete"] and json.loads((root / "val" / "procedural.json").read_text())["sequences"] == 3
    with pytest.raises(ValueError, match="other parameters"):
        make_benchmark(root, sequences=2, frames=8, size=SIZE, seed=2)


@pytest.mark.parametrize("layout", ["got10k", "lasot"])
def test_a_killed_run_leaves_partial_folders_the_next_run_removes(tmp_path, layout):
    """SIGKILL mid-sequence leaves a hidden .partial folder; the next run removes it (its process is gone), keeps one
    of a process still running, and writes folders and files with the umask's mode."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "b"
    args = ["make-benchmark", str(root), "--sequences", "2", "--frames", "300", "--size", "160x120", "--layout", layout]
    previous = os.umask(0o022)
    try:
        run = subprocess.Popen([sys.executable, "-c", "from lorat_plugin.cli import main; raise SystemExit(main())",
                                *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not any(p.suffix == ".jpg" for p in root.glob("**/.*.partial/**/*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)
        run.wait()
        stale = list(root.glob("**/.*.partial"))
        assert len(stale) == 1
        running = stale[0].with_name(f".{stale[0].name.split('.')[1]}.{os.getppid()}.partial")  # a live run's
        running.mkdir()
        from lorat_plugin.cli import main

        assert main(args) == 0
    finally:
        os.umask(previous)
    assert [p.name for p in root.glob("**/.*.partial")] == [running.name]
    sequences = load_dataset(layout, root, split="val" if layout == "got10k" else "test")
    assert len(sequences) == 2 and all(len(s) == 300 for s in sequences)
    folder = sequences[0].frames[0].parent
    for path in (folder, folder / "00000001.jpg", *folder.parent.glob("*/groundtruth.txt"),
                 *root.glob("**/*.json"), *root.glob("**/list.txt"), *root.glob("*_set.txt")):
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="split"):
        plan_benchmark(split="val", sequences=1, frames=8, size=SIZE, seed=0)
    with pytest.raises(ValueError, match="photographs"):
        plan_benchmark(split="test", sequences=1, frames=8, size=SIZE, seed=0, photographs=("nope", "moon"))
    with pytest.raises(ValueError, match="too small"):
        plan_benchmark(split="test", sequences=1, frames=8, size=(32, 32), seed=0)
    with pytest.raises(ValueError, match="layout"):
        make_benchmark(tmp_path, sequences=1, frames=4, size=SIZE, layout="otb")
    with pytest.raises(ValueError, match="other split"):
        plan_benchmark(split="test", sequences=1, frames=8, size=SIZE, seed=0, photographs=("astronaut", "moon"))
    with pytest.raises(ValueError, match="train split only"):
        make_benchmark(tmp_path, split="test", sequences=1, frames=4, size=SIZE, textures=3)
    with pytest.raises(ValueError, match="texture"):
        make_benchmark(tmp_path, split="train", sequences=1, frames=4, size=SIZE, textures=-1)


def test_synthetic_textures_are_seeded_varied_and_train_only(tmp_path):
    from lorat_plugin.demo.procedural.photos import load_photograph, photograph_split, synthetic_texture

    first = [load_photograph(f"texture-{i:03d}") for i in range(6)]
    assert all(t.dtype == np.uint8 and t.shape == (480, 640, 3) and not t.flags.writeable for t in first)
    synthetic_texture.cache_clear()
    assert np.array_equal(synthetic_texture(4), first[4])  # a pure function of its number
    assert len({t.tobytes() for t in first}) == 6 and all(t.std() > 5 for t in first)
    assert photograph_split("texture-123") == "train" and photograph_split("texture-x") is None
    bench = make_benchmark(tmp_path / "tex", split="train", sequences=16, frames=4, size=SIZE, seed=2, textures=40)
    assert bench.manifest["photographs"][-1] == "texture-039"
    used = [p for plan in bench.plans() for p in (plan.target.photo, plan.background)]
    textures = [p for p in used if p.startswith("texture-")]
    assert 0.25 < len(textures) / len(used) < 0.75  # half of the picks, however many textures there are
    assert {p for p in used if p not in textures} <= set(split_photographs("train"))
    frames = load_dataset("got10k", tmp_path / "tex", split="train")[0]
    assert frames.frame(0).shape == (SIZE[1], SIZE[0], 3)


@pytest.mark.parametrize("layout", ["got10k", "lasot"])
def test_the_procedural_reader_reads_either_layout(tmp_path, layout):
    bench = make_benchmark(tmp_path / layout, split="test", sequences=2, frames=8, size=SIZE, seed=3, layout=layout)
    ours = load_dataset("procedural", bench.root)
    direct = load_dataset(layout, bench.root, split=bench.subset)
    assert [s.name for s in ours] == [s.name for s in direct] == list(bench.names)
    for a, b in zip(ours, direct):
        np.testing.assert_array_equal(a.boxes, b.boxes)
    with pytest.raises(FileNotFoundError, match="no procedural train split under"):
        load_dataset("procedural", bench.root, split="train")


@pytest.mark.parametrize("layout", ["got10k", "lasot"])
def test_the_layout_writer_writes_the_procedural_ground_truth_with_four_decimals(tmp_path, layout):
    """The shipped benchmark's ground truth is pinned by SHA-256 (assets/demo_benchmark.json): the one layout
    writer must write exactly these lines, 1-based for LaSOT, an absent target as 0,0,0,0."""
    bench = make_benchmark(tmp_path, split="test", sequences=3, frames=30, size=SIZE, seed=11, layout=layout)
    shift = 1.0 if layout == "lasot" else 0.0
    absent = 0
    for folder, plan in zip(bench.folders, bench.plans()):
        expected = []
        for frame in render_sequence(plan):
            if frame.box is None:
                expected.append("0,0,0,0")
                absent += 1
            else:
                x, y, w, h = frame.box
                expected.append(f"{x + shift:.4f},{y + shift:.4f},{w:.4f},{h:.4f}")
        assert (folder / "groundtruth.txt").read_text() == "\n".join(expected) + "\n"
    assert absent > 0  # the seed gives absent frames, so the 0,0,0,0 rule is exercised


def test_vot_layout_reads_as_toolkit_sequences(tmp_path):
    """--layout vot: the toolkit's sequence folders (checked by the VOT reader `lorat vot-workspace` uses), an anchor
    on frame 1 and one about 50 frames later, one line per frame in each tag file."""
    from lorat_plugin.data.datasets.vot import find_sequences

    bench = make_benchmark(tmp_path / "vot", sequences=2, frames=60, size=SIZE, seed=0, layout="vot")
    found = find_sequences(bench.root)
    assert [s.name for s in found] == list(bench.names)
    for sequence in found:
        assert sequence.anchors[0] == 1 and len(sequence.anchors) == 2 and 51 <= sequence.anchors[1] <= 60
        assert sequence.unannotated_anchors == [] and sequence.objects == 1 and not sequence.masks
        metadata = dict(line.split("=", 1) for line in (sequence.path / "sequence").read_text().splitlines())
        assert metadata["length"] == "60" and (metadata["width"], metadata["height"]) == tuple(map(str, SIZE))
        assert len((sequence.path / "groundtruth.txt").read_text().splitlines()) == 60
        for tag in sequence.path.glob("*.tag"):
            assert len(tag.read_text().split()) == 60
        assert (sequence.path / "occlusion.tag").is_file()
