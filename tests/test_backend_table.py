"""The engine decides once: one backend table, the model's own precision boundary, one device parser.

What a contributor does most, done here as a test: add a precision (one module's ``build`` and one row of
``BACKENDS``) and run a model whose head has another inner layout in bf16.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lorat_plugin.cli import main
from lorat_plugin.engine import BACKENDS, TrackingEngine, build_network, precision_name, resolve_precision
from lorat_plugin.engine.backends import Backend, BackendOptions
from lorat_plugin.engine.cast import cast_model
from lorat_plugin.engine.network import TorchNetwork
from lorat_plugin.model import build_model
from lorat_plugin.model.network import NetworkOutput


# ---- a new precision: one build function (its module) and one row ---------------------------------------------------

def build_fp64(model: nn.Module, device: torch.device, options: BackendOptions) -> TorchNetwork:
    """A stand-in for a contributor's new backend module: the low-precision modules stored in float64."""
    return TorchNetwork(cast_model(model, torch.float64, device), device, torch.float64, "stored fp64 weights")


@pytest.fixture
def fp64_row(monkeypatch) -> Backend:
    row = Backend("fp64", torch.float64, ("cpu",), build_fp64)
    monkeypatch.setitem(BACKENDS, "fp64", row)
    return row


def test_a_new_precision_is_one_row_of_the_table(fp64_row, tiny_config, moving_video) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config, merge=True)
    assert resolve_precision("fp64", "cpu") == torch.float64 and precision_name(torch.float64) == "fp64"
    with pytest.raises(ValueError, match="fp64 runs on cpu only"):
        resolve_precision("fp64", "cuda")
    engine = TrackingEngine(model, device="cpu", dtype="fp64")
    assert engine.dtype == torch.float64 and engine.network.description.startswith("stored fp64 weights")
    reference = TrackingEngine(model, device="cpu", dtype="fp32")
    frames, truth = moving_video(5)
    boxes = {}
    for name, tracker in (("fp64", engine), ("fp32", reference)):
        state = tracker.initialize([frames[0]], truth[:1])
        boxes[name] = np.concatenate([tracker.track(state, [frame])[0] for frame in frames[1:]])
    np.testing.assert_allclose(boxes["fp64"], boxes["fp32"], atol=1e-3)


def test_the_cli_names_the_tables_precisions(capsys) -> None:
    assert main(["track", "x.mp4", "--init", "1,1,5,5", "--dtype", "fp8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fp32, bf16, fp16, int8" in err and "fp8" in err


# ---- the model owns its precision boundary ------------------------------------------------------------------------

class TrunkHead(nn.Module):
    """A head of another inner layout: one shared trunk, then a score and a box layer (no ``cls_mlp``)."""

    def __init__(self, dim: int, grid: int, low_precision: bool) -> None:
        super().__init__()
        self.grid = grid
        self.trunk = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.score = nn.Linear(dim, 1)
        self.box = nn.Linear(dim, 4)
        self.low_precision = low_precision

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        hidden = self.trunk(x.to(self.trunk[0].weight.dtype)).float()
        b = x.shape[0]
        score = self.score(hidden).view(b, self.grid, self.grid)
        centre_size = self.box(hidden).sigmoid().view(b, self.grid, self.grid, 4)
        return NetworkOutput(score, torch.cat((centre_size[..., :2], centre_size[..., :2] + 0.1), dim=-1))

    def low_precision_modules(self) -> list[nn.Module]:
        return [self.trunk] if self.low_precision else []


@pytest.mark.parametrize("declares", [True, False])
def test_a_head_of_another_layout_runs_in_bf16(tiny_config, moving_video, declares: bool) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config, merge=True)
    model.head = TrunkHead(tiny_config.embed_dim, tiny_config.search_grid, declares)
    if not declares:
        del TrunkHead.low_precision_modules  # a head that says nothing stays float32
    try:
        engine = TrackingEngine(model, device="cpu", dtype="bf16")
        module = engine.network.inner.module
        assert module.blocks[0].norm1.weight.dtype == torch.bfloat16
        assert module.head.trunk[0].weight.dtype == (torch.bfloat16 if declares else torch.float32)
        assert module.head.score.weight.dtype == torch.float32
        frames, truth = moving_video(4)
        states = engine.initialize([frames[0]], truth[:1])
        for frame in frames[1:]:
            boxes, scores = engine.track(states, [frame])
            assert np.isfinite(boxes).all() and np.isfinite(scores).all()
    finally:
        if not declares:
            TrunkHead.low_precision_modules = lambda self: [self.trunk] if self.low_precision else []


def test_fp32_casts_nothing_and_the_copy_needs_no_hooks(tiny_config) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config, merge=True).eval()
    inputs = model.get_sample_data(2)
    with torch.inference_mode():
        expected = model(*inputs)
    fast = cast_model(model, torch.bfloat16)
    assert fast.compute_dtype == torch.bfloat16 and model.compute_dtype == torch.float32
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in fast.modules())
    with torch.inference_mode():
        out = fast(*inputs)
    assert isinstance(out, NetworkOutput) and out.boxes.dtype == torch.float32
    assert (out.boxes - expected.boxes).abs().max() < 2e-2


# ---- resolved once -----------------------------------------------------------------------------------------------

def test_an_engine_takes_a_model_with_options_or_a_backend_alone(tiny_config) -> None:
    model = build_model(tiny_config, merge=True)
    backend = build_network(model, "cpu", "fp32")
    assert TrackingEngine(backend).network is backend
    for options in ({"device": "cpu"}, {"dtype": "fp32"}, {"compile": True}):
        with pytest.raises(ValueError, match="already bound"):
            TrackingEngine(backend, **options)
    with pytest.raises(TypeError, match="unknown backend options"):
        TrackingEngine(model, device="cpu", turbo=True)


@pytest.mark.parametrize("bad", ["toaster", "cuda:x"])
def test_a_bad_device_is_one_line_in_every_verb(bad: str, tmp_path, tiny_checkpoint, monkeypatch, capsys) -> None:
    benchmark_root = tmp_path / "bench"
    monkeypatch.setenv("LORAT_DATA", str(tmp_path))  # the default recipe's datasets, read when the config loads
    verbs = {
        "track": ["track", "clip.mp4", "--init", "1,1,5,5", "--checkpoint", str(tiny_checkpoint), "--device", bad],
        "evaluate": ["evaluate", "--dataset", "got10k", "--root", str(benchmark_root), "--output", str(tmp_path / "o"),
                     "--checkpoint", str(tiny_checkpoint), "--device", bad],
        "benchmark": ["benchmark", "--checkpoint", str(tiny_checkpoint), "--device", bad],
        "train": ["train", "--output", str(tmp_path / "run"), f"train.device={bad}"],
    }
    for verb, argv in verbs.items():
        assert main(argv) == 2, verb
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and repr(bad) in err and "use one of cpu" in err, (verb, err)
    monkeypatch.setenv("LORAT_DEVICE", bad)
    assert main(verbs["track"][:-2]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"LORAT_DEVICE {bad!r}" in err
    from lorat_plugin.trackers.trax_server import ServerSettings

    with pytest.raises(ValueError, match=f"LORAT_DEVICE {bad!r} .*use one of cpu"):
        ServerSettings.from_env({"LORAT_DEVICE": bad})


def test_options_a_backend_cannot_honour_are_errors(tmp_path, tiny_checkpoint, capsys) -> None:
    from PIL import Image

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not read: refused before")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(frames / f"{i + 1:08d}.jpg")
    for flags in (["--dtype", "fp16"], ["--compile"], ["--device", "cpu"]):
        assert main(["track", str(frames), "--init", "1,1,5,5", "--onnx", str(onnx), "-o", "-", *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flags[0] in err and "--onnx" in err
