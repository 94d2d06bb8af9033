"""The same boxes from every entry point, for one model, precision, device (CPU) and thread count:

* `lorat evaluate` with ``--batch-size 1``, ``3``, the default, and under ``torchrun --nproc-per-node 2`` (gloo):
  records equal as float64;
* the got10k toolkit's ``ExperimentGOT10k`` with ``LoRATTracker``: result files equal `lorat evaluate`'s GOT-10k
  layout byte for byte (both ``%.3f``);
* the VOT toolkit's ``unsupervised`` experiment (``vot evaluate`` starting the TraX program as users start it): boxes
  equal the records rounded to TraX's 4 decimals, from ground truth with 4 decimals.

Every entry point is started as a user starts it, on one generated GOT-10k-layout benchmark (`lorat make-benchmark`)
and its copy in the VOT layout. Models: B-224 widths (768 wide, 12 heads, 320 tokens) with 2 blocks and random
weights, where batch effects of the CPU kernels show (the suite's width-32 model hides them), and the shipped demo
model. Each process runs ``THREADS`` intra-op threads: results may differ between thread counts.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from lorat_plugin.cli import main as lorat
from lorat_plugin.data import read_image
from lorat_plugin.engine.precision import cpu_has_native_bf16
from lorat_plugin.evaluation.records import load_records
from lorat_plugin.model import build_model, save_checkpoint
from lorat_plugin.model.config import VARIANTS

THREADS = "1"  # OMP_NUM_THREADS of every process: `lorat evaluate`, each torchrun rank, got10k's, the TraX program
SEQUENCES, FRAMES = 4, 12  # calls of 1 sequence, 3 then 1, all 4 (the default batch size), 2 per torchrun rank
RUNS = ("--batch-size 1", "--batch-size 3", "default batch size", "torchrun --nproc-per-node 2")
NATIVE_BF16 = pytest.mark.skipif(not cpu_has_native_bf16(),
                                 reason="this CPU has no native bf16 (AVX512-BF16/AMX): bf16 is emulated, not shipped")


def cases() -> list:
    """(model, dtype) for both models and the CPU precisions."""
    params = []
    for model in ("b224x2", "demo"):
        for dtype in ("fp32", "bf16", "int8"):
            marks = [NATIVE_BF16] if dtype == "bf16" else []
            params.append(pytest.param(model, dtype, id=f"{model}-{dtype}", marks=marks))
    return params


def environment() -> dict[str, str]:
    """The user's environment without model choices or torchrun variables, with a fixed thread count."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LORAT_", "VOT_")) and k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    bin_dir = str(Path(sys.executable).parent)
    env.update(OMP_NUM_THREADS=THREADS, MPLBACKEND="Agg", PATH=bin_dir + os.pathsep + env.get("PATH", ""))
    return env


def run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def lorat_command() -> list[str]:
    """The `lorat` console script of this environment, as users run it (else `python -m lorat_plugin.cli`)."""
    script = Path(sys.executable).with_name("lorat")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lorat_plugin.cli"]


GOT10K_SCRIPT = """
import sys
from got10k.experiments import ExperimentGOT10k
from lorat_plugin.trackers import LoRATTracker

root, results, dtype, checkpoint = sys.argv[1:]
tracker = LoRATTracker(checkpoint=checkpoint or None, device="cpu", dtype=dtype)
ExperimentGOT10k(root, subset="val", result_dir=results, report_dir=results + "-reports").run(tracker)
"""


class EntryPoints:
    """Runs each entry point once per (model, precision) and keeps its output folder for every test of the module."""

    def __init__(self, benchmark: Path, folder: Path, checkpoints: dict[str, Path | None]) -> None:
        self.benchmark = benchmark
        self.folder = folder
        self.checkpoints = checkpoints
        self.done: dict[tuple[str, ...], Path] = {}

    def model_arguments(self, model: str) -> list[str]:
        checkpoint = self.checkpoints[model]
        return ["--checkpoint", str(checkpoint)] if checkpoint else []  # none: the shipped demo model

    def evaluate(self, model: str, dtype: str, how: str) -> Path:
        key = ("evaluate", model, dtype, how)
        if key not in self.done:
            output = self.folder / "-".join(key).replace(" ", "_")
            arguments = ["evaluate", "--dataset", "got10k", "--split", "val", "--root", str(self.benchmark),
                         "--output", str(output), "--device", "cpu", "--dtype", dtype, "--quiet",
                         *self.model_arguments(model)]
            if how.startswith("--batch-size"):
                arguments += how.split()
            if how.startswith("torchrun"):
                command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "lorat_plugin.cli", *arguments]
            else:
                command = lorat_command() + arguments
            run(command)
            self.done[key] = output
        return self.done[key]

    def got10k(self, model: str, dtype: str) -> Path:
        key = ("got10k", model, dtype)
        if key not in self.done:
            results = self.folder / "-".join(key)
            checkpoint = self.checkpoints[model]
            run([sys.executable, "-c", GOT10K_SCRIPT, str(self.benchmark), str(results), dtype,
                 str(checkpoint) if checkpoint else ""])
            self.done[key] = results
        return self.done[key]

    def vot(self, model: str, dtype: str, run_vot: Callable[..., subprocess.CompletedProcess]) -> Path:
        key = ("vot", model, dtype)
        if key not in self.done:
            folder = self.folder / "-".join(key)
            workspace = folder / "ws"
            sequences = vot_layout(self.benchmark / "val", folder / "sequences")
            assert lorat(["vot-workspace", str(workspace), "--stack", "tests/basic", "--sequences-dir",
                          str(sequences), "--device", "cpu", "--dtype", dtype, *self.model_arguments(model)]) == 0
            done = run_vot(["evaluate", "--workspace", str(workspace), "lorat"], folder, OMP_NUM_THREADS=THREADS)
            assert "Evaluation concluded successfuly" in done.stdout + done.stderr, done.stdout + done.stderr
            self.done[key] = workspace
        return self.done[key]


def vot_layout(got10k_split: Path, output: Path) -> Path:
    """The same frames and ground truth in the VOT toolkit's sequence layout (`tests/basic` reads it)."""
    names = (got10k_split / "list.txt").read_text().split()
    for name in names:
        frames = sorted((got10k_split / name).glob("*.jpg"))
        (output / name / "color").mkdir(parents=True)
        for index, frame in enumerate(frames, 1):
            shutil.copy(frame, output / name / "color" / f"{index:08d}.jpg")
        shutil.copy(got10k_split / name / "groundtruth.txt", output / name / "groundtruth.txt")
        width, height = Image.open(frames[0]).size
        (output / name / "sequence").write_text(f"channels.color=color/%08d.jpg\nfps=30\nformat=default\nname={name}\n"
                                                f"width={width}\nheight={height}\nlength={len(frames)}\n")
    (output / "list.txt").write_text("".join(f"{name}\n" for name in names))
    return output


@pytest.fixture(scope="module")
def entry_points(tmp_path_factory: pytest.TempPathFactory, dinov2_writer: Callable[..., Path]) -> EntryPoints:
    folder = tmp_path_factory.mktemp("entry_points")
    benchmark = folder / "benchmark"
    assert lorat(["make-benchmark", str(benchmark), "--sequences", str(SEQUENCES), "--frames", str(FRAMES),
                  "--size", "160x120", "--seed", "0", "--quiet"]) == 0
    config = VARIANTS["B-224"].replace(depth=2)
    torch.manual_seed(1)
    model = build_model(config, backbone_weights=dinov2_writer(folder / "dinov2_b224x2.pth", config))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:  # head and adapters: random, so the adapters change the network too
                parameter.normal_(0, 0.02)
    checkpoint = save_checkpoint(model, folder / "b224x2.safetensors", include_backbone=True)
    return EntryPoints(benchmark, folder, {"b224x2": checkpoint, "demo": None})


def first_difference(expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> str | None:
    """None when both hold the same sequences with equal arrays, else where they first differ."""
    if sorted(expected) != sorted(got):
        return f"sequences {sorted(expected)} != {sorted(got)}"
    for name in sorted(expected):
        a, b = expected[name], got[name]
        if a.shape != b.shape:
            return f"{name}: shape {a.shape} != {b.shape}"
        unequal = np.flatnonzero(np.any((a != b).reshape(len(a), -1), axis=1))
        if unequal.size:
            frame = unequal[0]
            return (f"{name} frame {frame}: {a[frame].tolist()} != {b[frame].tolist()} "
                    f"(max difference {np.abs(a - b).max():.3g} over {unequal.size} frames)")
    return None


def records(folder: Path, field: str = "boxes") -> dict[str, np.ndarray]:
    return {name: getattr(by_run[1], field) for name, by_run in load_records(folder).items()}


def got10k_box_files(folder: Path) -> dict[str, bytes]:
    """The GOT-10k layout's box files (``<tracker>/<seq>/<seq>_001.txt``) by path inside ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*_[0-9][0-9][0-9].txt"))}


@pytest.mark.slow
@pytest.mark.parametrize("model, dtype", cases())
def test_evaluate_records_are_equal_at_every_batch_size_and_under_torchrun(entry_points: EntryPoints, model: str,
                                                                          dtype: str) -> None:
    first = entry_points.evaluate(model, dtype, RUNS[0])
    differences = []
    for how in RUNS[1:]:
        other = entry_points.evaluate(model, dtype, how)
        for field in ("boxes", "scores"):
            difference = first_difference(records(first, field), records(other, field))
            if difference is not None:
                differences.append(f"{dtype} {field}, {RUNS[0]} vs {how}: {difference}")
    assert not differences, "\n".join(differences)


@pytest.mark.slow
@pytest.mark.parametrize("model, dtype", cases())
def test_got10k_toolkit_files_equal_the_evaluate_layout(entry_points: EntryPoints, model: str, dtype: str) -> None:
    pytest.importorskip("got10k")
    evaluated = entry_points.evaluate(model, dtype, "default batch size") / "GOT-10k"
    toolkit = entry_points.got10k(model, dtype) / "GOT-10k"
    expected, got = got10k_box_files(evaluated), got10k_box_files(toolkit)
    assert len(expected) == SEQUENCES and sorted(got) == sorted(expected)  # the same tracker name and sequences
    differing = [path for path in expected if got[path] != expected[path]]
    assert not differing, f"{dtype}: {differing[0]} differs:\n{got[differing[0]].decode()}\nvs evaluate's\n" \
                          f"{expected[differing[0]].decode()}"


@pytest.mark.slow
@pytest.mark.parametrize("model, dtype", cases())
def test_vot_unsupervised_boxes_are_the_records_at_trax_precision(entry_points: EntryPoints, model: str,
                                                                  dtype: str) -> None:
    pytest.importorskip("vot", reason="the VOT toolkit is not installed (pip install 'lorat-plugin[vot]')")
    pytest.importorskip("trax", reason="vot-trax is not installed (pip install 'lorat-plugin[vot]')")
    from test_vot_toolkit import run_vot
    from vot.region import Special
    from vot.region.io import read_trajectory

    workspace = entry_points.vot(model, dtype, run_vot)
    evaluated = records(entry_points.evaluate(model, dtype, "default batch size"))
    results, = (workspace / "results").glob("lorat*")  # `lorat`, or `lorat@<model>` where entries are versioned
    tracked = {}
    for name in evaluated:
        trajectory = read_trajectory(str(results / "baseline" / name / f"{name}_001.bin"))
        assert isinstance(trajectory[0], Special) and len(trajectory) == FRAMES  # frame 0: the toolkit's init mark
        tracked[name] = np.array([[r.x, r.y, r.width, r.height] for r in trajectory[1:]], dtype=np.float64)
    # TraX sends "%.4f"; the toolkit stores float32 (vot.region.io.write_trajectory_binary).
    at_trax_precision = {name: np.array([[float(f"{v:.4f}") for v in box] for box in boxes[1:]], dtype=np.float32)
                         .astype(np.float64) for name, boxes in evaluated.items()}
    difference = first_difference(at_trax_precision, tracked)
    assert difference is None, f"{dtype}, records vs the VOT toolkit's boxes (frames from 1): {difference}"


def trax_wire(region):  # noqa: ANN001, ANN201 -- trax regions
    """(the text libtrax sends for ``region``, the region the other end decodes from it)."""
    import trax
    from trax._ctypes import trax_region_decode, trax_region_encode

    text = ctypes.cast(trax_region_encode(region.reference), ctypes.c_char_p).value
    return text.decode(), trax.Region.wrap(ctypes.c_void_p(trax_region_decode(text)))


def test_trax_rectangles_are_sent_as_the_boxes_rounded_to_4_decimals() -> None:
    """libtrax prints its float32 copy with "%.4f": near a half-step that rounds the other way than the box does."""
    trax = pytest.importorskip("trax", reason="vot-trax is not installed (pip install 'lorat-plugin[vot]')")
    from lorat_plugin.trackers.trax_server import TraxSession

    class FixedBoxEngine:
        def initialize(self, frames, boxes):  # noqa: ANN001, ANN202
            return [type("State", (), {"box": box})() for box in boxes]

        def track(self, states, frames):  # noqa: ANN001, ANN202
            return np.array([[20.00005, 1.23455, 999.99995, 12.34565]]), np.ones(1)

    session = TraxSession(FixedBoxEngine())
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    session.initialize(frame, [trax.Rectangle.create(1, 2, 3, 4)])
    (region, properties), = session.frame(frame)
    text, received = trax_wire(region)
    expected = [float(f"{v:.4f}") for v in (20.00005, 1.23455, 999.99995, 12.34565)]
    assert text == ",".join(f"{v:.4f}" for v in expected)
    assert list(received.bounds()) == np.float32(expected).tolist()  # what the toolkit stores


def test_trax_initial_rectangle_is_the_box_of_the_ground_truth_text() -> None:
    """The toolkit sends the ground truth's 4 decimals; libtrax's float32 copy is rounded back to them, so tracking
    starts from the box `lorat evaluate` reads from the same file."""
    trax = pytest.importorskip("trax", reason="vot-trax is not installed (pip install 'lorat-plugin[vot]')")
    from lorat_plugin.trackers.trax_server import region_to_box

    ground_truth = "69.6272,45.2089,17.9228,20.3232"
    _, rectangle = trax_wire(trax.Rectangle.create(*map(float, ground_truth.split(","))))
    assert region_to_box(rectangle).tolist() == [float(v) for v in ground_truth.split(",")]
    _, polygon = trax_wire(trax.Polygon.create([(10.1, 20.2), (34.3, 20.2), (34.3, 40.7), (10.1, 40.7)]))
    assert region_to_box(polygon).tolist() == [10.1, 20.2, 34.3 - 10.1, 40.7 - 20.2]


def test_got10k_experiments_get_frames_decoded_as_evaluate_decodes_them(tmp_path: Path,
                                                                       tiny_checkpoint: Path) -> None:
    """got10k's own loop converts frames with PIL's convert("RGB"), which clips 16-bit and float frames to 255;
    `lorat evaluate` scales them (read_image). LoRATTracker.track, which got10k's experiments call, decodes as the
    latter."""
    pytest.importorskip("got10k")
    from lorat_plugin.trackers import LoRATTracker

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    files = [tmp_path / "rgb.jpg", tmp_path / "gray16.png", tmp_path / "float.tif"]
    Image.fromarray(np.dstack([gray, gray[::-1], gray[:, ::-1]])).save(files[0], quality=95)
    Image.fromarray(gray.astype(np.uint16) * 257).save(files[1])
    Image.fromarray(gray.astype(np.float32) / 255).save(files[2])
    tracker = LoRATTracker(build_model(checkpoint=tiny_checkpoint, merge=True), device="cpu", name="tiny")
    seen: list[np.ndarray] = []
    initialize, track = tracker.engine.initialize, tracker.engine.track
    tracker.engine.initialize = lambda frames, boxes: seen.extend(frames) or initialize(frames, boxes)
    tracker.engine.track = lambda states, frames: seen.extend(frames) or track(states, frames)

    boxes, times = tracker.track([str(f) for f in files], np.array([20.5, 10.25, 16, 12]))
    assert boxes.shape == (3, 4) and boxes[0].tolist() == [20.5, 10.25, 16, 12] and np.all(times > 0)
    for file, frame in zip(files, seen, strict=True):
        assert np.array_equal(frame, read_image(file)), file.name
