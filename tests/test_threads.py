"""Boxes do not depend on the thread count: the same sequence tracked at every count the thread chooser
(lorat_plugin.process.choose_threads) can pick gives bit-identical boxes and scores, in fp32, bf16 and int8.

The chooser picks between 1 and this process's CPUs; the counts tried are every count up to 4 (so a two-core CI
machine also runs the kernels' splits of a bigger one, oversubscribed) and half and all of the CPUs beyond that.
The models are one block wide enough for the kernels' real choices: B-224 widths (320 tokens: the bf16 default's
grouped attention, one group of twelve heads), B-378 widths (925 tokens: one head per group) and the shipped demo
model (80 tokens: PyTorch's fused attention kernel).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.engine import TrackingEngine
from lorat_plugin.engine.int8 import int8_available
from lorat_plugin.engine.precision import cpu_has_native_bf16
from lorat_plugin.model import ModelConfig, build_model
from lorat_plugin.model.sources import load_model
from lorat_plugin.process import usable_cpus

WIDTHS = {"B-224 widths": ModelConfig(embed_dim=768, depth=1, num_heads=12),
          "B-378 widths": ModelConfig(embed_dim=768, depth=1, num_heads=12, template_size=196, search_size=378,
                                      search_area_factor=5.0)}


def thread_counts() -> list[int]:
    cpus = usable_cpus() or 1
    return sorted({*range(1, 5), max(1, cpus // 2), cpus})


def _precisions() -> list:
    bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="bf16 is not this CPU's native precision")
    int8 = pytest.mark.skipif(not int8_available(), reason="this torch build has no oneDNN int8 kernels")
    # int8 also with fc1's GELU on the path this CPU does not take (Int8Block.gelu_in_kernel): both paths ship
    return ["fp32", pytest.param("bf16", marks=bf16), pytest.param("int8", marks=int8),
            pytest.param("int8, the other GELU path", marks=int8)]


def _model(which: str) -> torch.nn.Module:
    if which == "demo":
        return load_model("demo")
    torch.manual_seed(0)
    model = build_model(WIDTHS[which], merge=True)
    with torch.no_grad():  # not the init's near-zero LayerScale and head: every part must move the boxes
        for name, parameter in model.named_parameters():
            if "gamma" in name:
                parameter.fill_(0.5)
            elif name.startswith("head"):
                parameter.normal_(0, 0.02)
    return model.eval()


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _track(model: torch.nn.Module, precision: str, frames: list[np.ndarray], first: np.ndarray) -> np.ndarray:
    threads = torch.get_num_threads()
    engine = TrackingEngine(model, device="cpu", dtype=precision)  # built at this count: weights packed for it
    assert torch.get_num_threads() == threads  # the suite's pinned choice (tests/conftest.py) left it as set
    state = engine.initialize([frames[0]], first[None])
    rows = []
    for frame in frames[1:]:
        boxes, scores = engine.track(state, [frame])
        rows.append(np.concatenate([boxes[0], scores]))
    return np.array(rows)


@pytest.mark.parametrize("precision", _precisions())
@pytest.mark.parametrize("which", ["B-224 widths", "B-378 widths", "demo"])
def test_boxes_are_bit_identical_at_every_thread_count(which: str, precision: str, restore_threads,
                                                       monkeypatch) -> None:
    if precision == "int8, the other GELU path":
        import lorat_plugin.engine.int8 as int8_module

        this_cpu = int8_module.onednn_runs_avx512()
        monkeypatch.setattr(int8_module, "onednn_runs_avx512", lambda: not this_cpu)
        precision = "int8"
    model = _model(which)
    frames, truth = moving_box_video(4 if which == "B-378 widths" else 6, (320, 240), seed=3, step=(5.0, 3.0),
                                     textured=True)
    results = {}
    for threads in thread_counts():
        torch.set_num_threads(threads)
        results[threads] = _track(model, precision, frames, truth[0])
    one = results[1]
    assert np.abs(one[-1, :4] - one[0, :4]).max() > 0.5  # the boxes move: equal because computed alike, not frozen
    for threads, rows in results.items():
        assert np.array_equal(rows, one), (f"{which} {precision}: {threads} threads differ from 1 thread by "
                                           f"{np.abs(rows - one).max():.3g}")


def test_lorat_track_writes_the_same_file_at_any_thread_count(tmp_path, restore_threads, monkeypatch) -> None:
    from lorat_plugin import process
    from lorat_plugin.cli import main
    from lorat_plugin.data.video import write_video

    monkeypatch.setattr(process, "_CHOICE", None)
    frames, truth = moving_box_video(8, (320, 240), seed=5, step=(4.0, 2.0), textured=True)
    video = write_video(tmp_path / "clip.mp4", frames, fps=10)
    init = ",".join(f"{value:g}" for value in truth[0])
    texts = {}
    for threads in (1, 2, 3):  # the demo model at the CPU's default precision
        output = tmp_path / f"threads{threads}.txt"
        assert main(["track", str(video), f"--init={init}", "-o", str(output), "--threads", str(threads), "-q"]) == 0
        assert torch.get_num_threads() == threads
        texts[threads] = output.read_text()
    assert texts[1].splitlines()[-1] != texts[1].splitlines()[1]
    assert texts[2] == texts[1] and texts[3] == texts[1]
