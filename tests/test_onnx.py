"""ONNX export of the merged network, the ONNX Runtime backend, and tracking with it (`lorat export`,
`lorat track --onnx`)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lorat_plugin.cli import main
from lorat_plugin.engine import TrackingEngine
from lorat_plugin.model import build_model
from lorat_plugin.speed import compare_with_fp32

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from lorat_plugin.engine.onnx import TOLERANCE, OnnxNetwork, check_onnx, export_onnx  # noqa: E402



def test_export_round_trips_with_a_dynamic_batch(tmp_path: Path, tiny_config) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config, merge=True)
    path = export_onnx(model, tmp_path / "tiny.onnx")
    diffs = check_onnx(path, model)
    assert diffs["score_map"] <= TOLERANCE["fp32"][0] and diffs["boxes"] <= TOLERANCE["fp32"][1]
    network = OnnxNetwork(path)
    assert network.config == tiny_config and network.fixed_batch is None and network.dtype == torch.float32
    for batch in (1, 3):
        inputs = model.get_sample_data(batch, seed=batch)
        with torch.no_grad():
            expected = model(*inputs)
        score_map, boxes = network(*inputs)
        assert score_map.shape == (batch, 4, 4) and boxes.shape == (batch, 4, 4, 4)
        assert torch.allclose(boxes, expected.boxes, atol=TOLERANCE["fp32"][1])
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it


def test_unmerged_model_exports_merged_and_fp16_files_check(tmp_path: Path, tiny_config, randomize_adapters) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config)
    randomize_adapters(model)
    path = export_onnx(model, tmp_path / "tiny16.onnx", dtype="fp16", batch_size=2)
    assert model.has_lora  # the user's model is untouched
    assert check_onnx(path, model)["boxes"] <= TOLERANCE["fp16"][1]
    network = OnnxNetwork(path)
    assert network.fixed_batch == 2 and network.precision == "fp16"
    with pytest.raises(ValueError, match="batch size 2"):
        network(*model.get_sample_data(1))
    with pytest.raises(ValueError, match="fp32, fp16 or int8"):
        export_onnx(model, tmp_path / "x.onnx", dtype="bf16")


def test_files_without_lorat_metadata_are_refused(tmp_path: Path, tiny_config) -> None:
    class Plain(torch.nn.Module):
        def forward(self, z, x, z_feat_mask):
            return x.sum(dim=1), x

    path = tmp_path / "plain.onnx"
    example = build_model(tiny_config, device="meta").get_sample_data(1, "cpu")
    with warnings.catch_warnings():  # the TorchScript exporter (export_onnx uses it on purpose) warns it is legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Plain(), example, str(path), input_names=["z", "x", "z_feat_mask"],
                          output_names=["score_map", "boxes"], dynamo=False)
    with pytest.raises(ValueError, match="lorat export"):
        OnnxNetwork(path)
    with pytest.raises(FileNotFoundError):
        OnnxNetwork(tmp_path / "missing.onnx")


@pytest.mark.slow
def test_engine_on_onnx_tracks_the_reference_sequence_like_torch(tmp_path: Path, reference_tracking) -> None:
    model, frames, init = reference_tracking()
    frames = frames[:20]  # enough to move the boxes through many crops; the whole sequence adds time, not checks
    path = export_onnx(model, tmp_path / "fixture.onnx")
    torch_engine = TrackingEngine(model, device="cpu", dtype="fp32")
    onnx_engine = TrackingEngine(OnnxNetwork(path))
    agreement = compare_with_fp32(torch_engine, onnx_engine, frames, init)
    assert agreement.step_px.max() < 0.01, agreement.summary()
    assert agreement.closed_iou.min() > 0.999, agreement.summary()


def test_export_and_track_commands(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    from PIL import Image

    path = tmp_path / "tiny.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "-o", str(path)]) == 0
    assert "ONNX Runtime CPU vs PyTorch" in capsys.readouterr().out
    rng = np.random.default_rng(0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        frame = rng.integers(0, 120, (64, 96, 3), dtype=np.uint8)
        frame[20:36, 10 + 4 * i:28 + 4 * i] = (220, 30, 30)
        Image.fromarray(frame).save(folder / f"{i:04d}.png")
    boxes = tmp_path / "boxes.txt"
    assert main(["track", str(folder), "--init", "10,20,18,16", "--onnx", str(path), "-o", str(boxes), "-q"]) == 0
    rows = np.loadtxt(boxes, delimiter=",", ndmin=2)
    assert rows.shape == (5, 5) and np.allclose(rows[0, :4], (10, 20, 18, 16))
    reference = tmp_path / "reference.txt"
    assert main(["track", str(folder), "--init", "10,20,18,16", "--checkpoint", str(tiny_checkpoint), "--dtype",
                 "fp32", "-o", str(reference), "-q"]) == 0
    assert np.abs(np.loadtxt(reference, delimiter=",", ndmin=2) - rows).max() < 0.01
    assert main(["track", str(folder), "--init", "1,1,5,5", "--onnx", str(path), "--variant", "B-224"]) == 2
    assert "--onnx" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "-o", str(path), "--dtype", "bf16"]) == 2


def test_a_failed_check_writes_nothing_and_says_why_in_one_line(tmp_path: Path, tiny_checkpoint: Path, capsys,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = out / "tiny.onnx"
    monkeypatch.setitem(TOLERANCE, "fp32", (-1.0, -1.0))  # no file can pass: the check fails as a broken one would
    assert main(["export", str(path), "--checkpoint", str(tiny_checkpoint)]) == 1
    captured = capsys.readouterr()
    error, = captured.err.strip().splitlines()
    assert error.startswith(f"lorat export: error: {path} not written: ONNX Runtime differs") and "allowed" in error
    assert "wrote" not in captured.out and "Traceback" not in captured.err
    assert not list(out.iterdir())  # neither the file nor its temporary copy
    path.write_bytes(b"an earlier export")  # a failed export does not replace an existing file either
    assert main(["export", "-o", str(path), "--checkpoint", str(tiny_checkpoint)]) == 1
    assert path.read_bytes() == b"an earlier export" and list(out.iterdir()) == [path]


def test_output_is_positional_or_dash_o_not_two_files(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--no-check"]) == 2
    assert "lorat export FILE" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "a.onnx"), "-o", str(tmp_path / "b.onnx"), "--no-check"]) == 2
    assert "give one" in capsys.readouterr().err and not list(tmp_path.glob("*.onnx"))
    path = tmp_path / "same.onnx"
    assert main(["export", str(path), "-o", str(path), "--checkpoint", str(tiny_checkpoint), "--no-check"]) == 0
    assert OnnxNetwork(path).precision == "fp32"


@pytest.mark.slow
def test_the_shipped_demo_model_exports_to_int8(tmp_path: Path, capsys) -> None:
    """The demo model (192 wide, trained briefly) is further from fp32 in int8 than the fixture model; its file is
    checked against PyTorch's own int8 network, and must pass."""
    path = tmp_path / "demo_int8.onnx"
    assert main(["export", str(path), "--dtype", "int8"]) == 0, capsys.readouterr().err
    assert OnnxNetwork(path).precision == "int8"
    assert "boxes" in capsys.readouterr().out
