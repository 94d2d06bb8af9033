"""Fast backends (stored bf16/fp16 weights, torch.compile), their agreement with fp32, and
the `lorat benchmark` measurement. No timed assertions: machines are noisy; ratios are printed, not tested."""
from __future__ import annotations

import copy
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lorat_plugin.cli import main
from lorat_plugin.engine import TrackingEngine, TorchNetwork
from lorat_plugin.engine import backends
from lorat_plugin.engine.backends import build_network
from lorat_plugin.engine.cast import cast_model
from lorat_plugin.engine.compiled import CompiledNetwork, bucket_size, pad_batch
from lorat_plugin.engine.per_sequence import PerSequenceNetwork
from lorat_plugin.engine.precision import default_precision
from lorat_plugin.engine.onednn import OneDNNBlock, fusable, fuse_blocks, onednn_available
from lorat_plugin.model import build_model
from lorat_plugin.speed import (compare_with_fp32, format_speed_report, matmul_peak, network_flops,
                                measure_speed, timm_blocks)

from conftest import TRACKING_FIXTURE


# The tolerances docs/speed.md states for stored low-precision weights against the fp32 network / tracker:
# score logits relative to the largest |logit|, boxes absolute in normalised search-crop units.
NETWORK_TOLERANCE = {torch.bfloat16: (0.02, 2e-3), torch.float16: (0.005, 5e-4)}
STEP_TOLERANCE_PX = 0.5  # one tracker step from the same previous box, frame pixels


@pytest.fixture(scope="module")
def fixture_model(reference_tracking):
    return reference_tracking()


# ---- the low-precision copy -------------------------------------------------------------------------------------

def test_cast_model_leaves_the_users_model_alone_and_keeps_the_boundaries_fp32(tiny_config) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config, merge=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = cast_model(model, torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model._forward_pre_hooks and not model.blocks[0]._forward_pre_hooks
    assert fast.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert fast.patch_embed.proj.weight.dtype == torch.bfloat16
    assert fast.head.reg_mlp.layers[0].weight.dtype == torch.bfloat16
    for fp32 in (fast.norm.weight, fast.pos_embed, fast.token_type_embed, fast.head.reg_mlp.layers[-1].weight,
                 fast.head.cls_mlp.layers[-1].weight):
        assert fp32.dtype == torch.float32
    assert fast.pos_embed.data_ptr() == model.pos_embed.data_ptr()  # shared, not copied
    out = fast(*model.get_sample_data(2))
    assert out.score_map.dtype == out.boxes.dtype == torch.float32


def test_cast_model_needs_a_merged_model(tiny_config) -> None:
    with pytest.raises(ValueError, match="merged"):
        cast_model(build_model(tiny_config), torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_stored_precision_network_matches_fp32_within_the_stated_tolerance(fixture_model, dtype,
                                                                           reference_case) -> None:
    model, _, _ = fixture_model
    io = reference_case(TRACKING_FIXTURE).inputs
    inputs = (io["z"], io["x"], io["z_feat_mask"])
    reference = build_network(model, "cpu", "fp32")(*inputs)
    fast = build_network(model, "cpu", dtype)(*inputs)
    score_tol, box_tol = NETWORK_TOLERANCE[dtype]
    assert (fast[0] - reference[0]).abs().max() <= score_tol * reference[0].abs().max()
    assert (fast[1] - reference[1]).abs().max() <= box_tol
    # ... and the stored-weights path is at least as close as the reference's autocast AMP.
    amp = build_network(model, "cpu", dtype, autocast=True)(*inputs)
    assert (fast[1] - reference[1]).abs().max() <= (amp[1].float() - reference[1]).abs().max() + 1e-6


@pytest.mark.slow  # 30-40 s each; the tiny model's case below stays in the fast suite
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_tracker_steps_match_fp32_on_the_reference_sequence(fixture_model, dtype) -> None:
    model, frames, init = fixture_model
    if dtype == "fp16":
        frames = frames[:15]  # fp16 matrix products are slow on most CPUs; the bf16 case runs the whole sequence
    reference = TrackingEngine(model, device="cpu", dtype="fp32")
    fast = TrackingEngine(model, device="cpu", dtype=dtype)
    assert "stored" in fast.network.description
    agreement = compare_with_fp32(reference, fast, frames, init)
    assert agreement.step_px.max() <= STEP_TOLERANCE_PX, agreement.summary()
    assert np.all(np.isfinite(agreement.closed_iou))


def test_tracker_steps_match_fp32_on_the_tiny_model(tiny_checkpoint: Path, moving_video) -> None:
    model = build_model(checkpoint=tiny_checkpoint, merge=True)
    frames, truth = moving_video(12)
    agreement = compare_with_fp32(TrackingEngine(model, device="cpu", dtype="fp32"),
                                  TrackingEngine(model, device="cpu", dtype="bf16"), frames, truth[0])
    assert agreement.step_px.max() <= STEP_TOLERANCE_PX, agreement.summary()


# ---- oneDNN fused blocks -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("ffn", ["mlp", "swiglu"])
def test_onednn_blocks_match_the_eager_blocks(ffn: str, tiny_config) -> None:
    if not onednn_available():
        pytest.skip("this torch build has no oneDNN fused linear kernels")
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(tiny_config, ffn=ffn), merge=True)
    for block in model.blocks:  # LayerScale away from its init, so that folding it into the weights is tested
        block.ls1.gamma.data.uniform_(0.5, 1.5)
        block.ls2.gamma.data.uniform_(0.5, 1.5)
    inputs = model.get_sample_data(3)
    reference = build_network(model, "cpu", "fp32")(*inputs)
    eager = build_network(model, "cpu", "bf16", fused=False, per_sequence=False)
    fused = TorchNetwork(cast_model(model, torch.bfloat16, "cpu"), torch.device("cpu"), torch.bfloat16, "fused")
    assert fuse_blocks(fused.module.blocks, model.config.tokens) == len(model.blocks)
    assert all(isinstance(b, OneDNNBlock) for b in fused.module.blocks)
    assert not any(isinstance(b, OneDNNBlock) for b in eager.module.blocks)
    assert "oneDNN" not in eager.description
    score_tol, box_tol = NETWORK_TOLERANCE[torch.bfloat16]
    for out in (eager(*inputs), fused(*inputs)):
        assert (out[0] - reference[0]).abs().max() <= score_tol * reference[0].abs().max()
        assert (out[1] - reference[1]).abs().max() <= box_tol
    one = fused(*(t[:1] for t in inputs))  # packed for one frame, any batch size runs
    assert torch.allclose(one[1], fused(*inputs)[1][:1], atol=1e-6)


def test_onednn_is_the_bf16_default_only_where_bf16_is_native(monkeypatch, tiny_config) -> None:
    model = build_model(tiny_config, merge=True)

    def fused(dtype: str) -> bool:
        return "oneDNN" in build_network(model, "cpu", dtype).description

    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    assert not fused("bf16")  # forced bf16 on an older CPU: eager kernels
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)
    assert fused("bf16") == onednn_available()
    assert not fused("fp16") and not fused("fp32")


def test_onednn_fuses_only_plain_blocks(tiny_config) -> None:
    model = build_model(tiny_config)  # unmerged: LoRA-wrapped linear layers
    assert not fusable(model.blocks[0])
    model.strip_lora()
    assert fusable(model.blocks[0])
    if onednn_available():
        fast = cast_model(model, torch.bfloat16, "cpu")
        fuse_blocks(fast.blocks, model.config.tokens)
        with pytest.raises(TypeError, match="cannot be copied"):
            copy.deepcopy(fast.blocks[0])


# ---- choosing the backend ---------------------------------------------------------------------------------------

def test_build_network_picks_the_backend(tiny_config) -> None:
    model = build_model(tiny_config, merge=True)
    exact = build_network(model, "cpu", "fp32", per_sequence=False)
    assert isinstance(exact, TorchNetwork) and exact.module is model and exact.description == "fp32 weights"
    fast = build_network(model, "cpu", "bf16")
    assert isinstance(fast, PerSequenceNetwork) and fast.dtype == torch.bfloat16
    assert fast.inner.module.blocks[0].norm1.weight.dtype == torch.bfloat16 and fast.inner.module is not model
    amp = build_network(model, "cpu", "bf16", autocast=True)
    assert amp.dtype == torch.bfloat16 and amp.inner.autocast and amp.inner.module is model
    assert amp.description.startswith("bf16 autocast") and fast.description.startswith("stored bf16 weights")
    engine = TrackingEngine(model, device="cpu")
    assert engine.dtype == default_precision("cpu")
    with pytest.raises(ValueError, match="CUDA"):
        build_network(model, "cpu", "fp32", cuda_graphs=True)
    with pytest.raises(ValueError, match="autocast"):
        build_network(model, "cpu", "bf16", autocast=True, compile=True)
    with pytest.raises(ValueError, match="autocast runs bf16 or fp16"):
        build_network(model, "cpu", "fp32", autocast=True)
    with pytest.raises(TypeError, match="unknown backend options"):
        build_network(model, "cpu", "fp32", fast=True)


def test_unmerged_model_is_merged_into_a_copy(tiny_config, randomize_adapters) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config)
    randomize_adapters(model)
    inputs = model.get_sample_data(1)
    network = build_network(model, "cpu", "fp32", per_sequence=False)
    assert model.has_lora and not network.module.has_lora
    with torch.no_grad():
        expected = model.eval()(*inputs)
    assert torch.allclose(network(*inputs)[1], expected.boxes, atol=1e-5)


# ---- static batch sizes: buckets, torch.compile -------------------------------------------------------------------

def test_buckets_and_padding() -> None:
    assert [bucket_size(b) for b in (1, 2, 3, 5, 8, 9, 200, 300)] == [1, 2, 4, 8, 8, 16, 256, 512]
    with pytest.raises(ValueError):
        bucket_size(0)
    x = torch.arange(6.0).view(3, 2)
    padded, = pad_batch((x,), 4)
    assert padded.shape == (4, 2) and torch.equal(padded[3], x[2]) and torch.equal(padded[:3], x)


def test_compiled_network_matches_eager_at_a_padded_batch(tiny_config) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config, merge=True)
    inputs = model.get_sample_data(3)  # padded to the bucket of 4 and cut back
    eager = build_network(model, "cpu", "bf16", per_sequence=False)(*inputs)
    compiled_network = build_network(model, "cpu", "bf16", compile=True, per_sequence=False)
    assert isinstance(compiled_network, CompiledNetwork)
    compiled = compiled_network(*inputs)
    assert compiled[0].shape == (3, 4, 4) and compiled[1].shape == (3, 4, 4, 4)
    assert (compiled[0] - eager[0]).abs().max() <= NETWORK_TOLERANCE[torch.bfloat16][0] * eager[0].abs().max() + 1e-3
    assert (compiled[1] - eager[1]).abs().max() <= NETWORK_TOLERANCE[torch.bfloat16][1]


# ---- measuring ----------------------------------------------------------------------------------------------------

def test_yardstick_is_the_same_size_as_the_model() -> None:
    from lorat_plugin.model import count_parameters, get_config

    config = get_config("S-224")
    blocks = timm_blocks(config)
    model = build_model(config, device="meta", merge=True)
    block_params = sum(p.numel() for p in model.blocks.parameters()) + sum(p.numel() for p in model.norm.parameters())
    assert sum(p.numel() for p in blocks.parameters()) == block_params
    assert config.tokens == 320 and count_parameters(model)["total"] > block_params
    giant = get_config("g-224").replace(depth=1)
    assert sum(p.numel() for p in timm_blocks(giant).parameters()) == sum(
        p.numel() for p in build_model(giant, device="meta", merge=True).blocks.parameters()) + 2 * 1536


def test_network_flops_counts_every_block_with_its_attention(tiny_config) -> None:
    config = tiny_config.replace(depth=1)
    one, two = (network_flops(build_model(c, merge=True).eval()) for c in (config, config.replace(depth=2)))
    n, d, hidden = config.tokens, config.embed_dim, config.ffn_hidden
    block = 2 * n * (3 * d * d + d * d + 2 * d * hidden) + 2 * 2 * n * n * d  # qkv, proj, fc1, fc2; QK^T and AV
    assert two - one == block
    patches = 2 * n * 3 * config.patch_size ** 2 * d
    assert one > block + patches


@pytest.mark.parametrize("merge", [True, False])
def test_network_flops_on_a_meta_copy_equal_a_cpu_forward(merge: bool, tiny_config, randomize_adapters) -> None:
    """Counted on a meta copy (no arithmetic): the same count as a real fp32 forward on the CPU, LoRA included."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = randomize_adapters(build_model(tiny_config, merge=merge).eval())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        model(*model.get_sample_data(1))
    assert network_flops(model) == counter.get_total_flops() > 0
    assert all(v.device.type == "cpu" and torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_matmul_peak_reports_a_rate() -> None:
    tflops, what = matmul_peak("cpu", torch.float32, size=64, repeats=2)
    assert tflops > 0 and what == "64x64x64 float32 torch.matmul"


@pytest.mark.parametrize("native_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_int8s_yardstick_is_the_precision_of_the_rest_of_its_network(monkeypatch, native_bf16: bool,
                                                                     expected: torch.dtype) -> None:
    # without native bf16 a 2048-cubed bf16 product is emulated: minutes, and nothing the int8 network runs
    from lorat_plugin.commands import benchmark
    from lorat_plugin.engine import backends

    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: native_bf16)
    assert benchmark._yardstick_dtype(torch.int8) == expected
    assert benchmark._yardstick_dtype(torch.float16) == torch.float16


def test_measure_speed_reports_every_backend_and_batch(tiny_checkpoint: Path) -> None:
    model = build_model(checkpoint=tiny_checkpoint, merge=True)
    backends = {"fp32": build_network(model, "cpu", "fp32"), "bf16": build_network(model, "cpu", "bf16")}
    result = measure_speed(backends, model, device="cpu", variant="tiny", weights="test", batch_sizes=(1, 2),
                           repeats=3, frame_size=(96, 64), baseline="fp32")
    assert [(r.backend, r.batch) for r in result.rows] == [("fp32", 1), ("bf16", 1), ("fp32", 2), ("bf16", 2)]
    for row in result.rows:
        assert row.model_ms > 0 and row.tracker_ms > 0 and row.timm_ms > 0
        assert row.model_vs_timm > 0 and row.tracker_vs_timm > 0
        assert (row.batch_speedup is None) == (row.batch == 1)
        # the speed-up over the baseline comes with its spread: the smallest and largest per-repeat ratio
        assert (row.model_speedup is None) == (row.backend == "fp32") == (row.tracker_speedup_range is None)
        if row.model_speedup is not None:
            low, high = row.model_speedup_range
            assert low <= row.model_speedup <= high
    assert result.load_before is not None and result.load_after is not None  # Linux has a load average
    text = format_speed_report(result)
    assert "model/timm" in text and "tracker/timm" in text and "CPU:" in text and "torch threads" in text
    assert "load average (1 min) before / after the timings" in text
    low, high = result.rows[1].model_speedup_range
    assert f"network {result.rows[1].model_speedup:.2f}x ({low:.2f}-{high:.2f})" in text


@pytest.mark.slow
def test_lorat_benchmark_command(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--compare",
                 "timm,fp32,autocast,batched", "--dtype", "bf16", "--batch-sizes", "1,2", "--repeats", "2",
                 "--frame-size", "96x64", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stored bf16 weights" in text and "fp32 weights" in text and "bf16 autocast" in text
    assert "model/timm" in text and "vs batch 1" in text and "GFLOP per frame" in text and "TFLOPS" in text
    data = json.loads(out.read_text())
    names = {row["backend"] for row in data["rows"]}
    assert len(data["rows"]) == 8 and data["hardware"]["cpu"] and len(names) == 4
    assert sum("one call per sequence" not in name for name in names) == 1  # --compare batched
    for bad in ("toaster", "onnx", "fp32=1"):
        with pytest.raises(SystemExit):
            main(["benchmark", "--checkpoint", str(tiny_checkpoint), "--compare", bad])
        assert "--compare" in capsys.readouterr().err
    assert data["flops_per_frame"] > 0 and data["matmul_tflops"] > 0
    assert all(row["model_tflops"] > 0 for row in data["rows"])
    assert main(["benchmark", "--checkpoint", str(tiny_checkpoint), "--batch-sizes", "0"]) == 2
    assert "--batch-sizes" in capsys.readouterr().err


# ---- the synthetic video ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("textured", [False, True])
def test_synthetic_video_boxes_are_exact_and_the_background_is_neither_red_nor_green(moving_video, textured) -> None:
    frames, truth = moving_video(6, (80, 60), box=(5, 7, 12, 9), step=(3, 1.5), growth=(0.5, 0), seed=4,
                                 textured=textured)
    assert len(frames) == len(truth) == 6 and frames[0].shape == (60, 80, 3) and frames[0].dtype == np.uint8
    np.testing.assert_array_equal(truth[:, :2], [[5 + 3 * i, int(7 + 1.5 * i)] for i in range(6)])
    np.testing.assert_array_equal(truth[:, 2], [12 + i // 2 for i in range(6)])
    for frame, (x, y, w, h) in zip(frames, truth.astype(int)):
        red = np.all(frame == (230, 30, 30), axis=-1)
        ys, xs = np.nonzero(red)
        inset = (w // 4, h // 4) if textured else (0, 0)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x + inset[0], y + inset[1], x + w - inset[0],
                                                                    y + h - inset[1])
        outside = np.ones(red.shape, bool)
        outside[y:y + h, x:x + w] = False
        assert frame[outside][:, :2].max() == 0  # neither red nor green: a drawn box or the target stands out
    again, _ = moving_video(6, (80, 60), box=(5, 7, 12, 9), step=(3, 1.5), growth=(0.5, 0), seed=4,
                            textured=textured)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))
    np.testing.assert_array_equal(moving_video(1, (80, 60), box=(70, -4, 20, 10))[1], [[70, 0, 10, 6]])  # clipped
    with pytest.raises(ValueError, match="is outside the 80x60 frame"):
        moving_video(30, (80, 60), box=(5, 7, 12, 9), step=(3, 0))


# ---- OpenVINO, timed apart --------------------------------------------------------------------------------------

def test_compare_openvino_times_it_apart_and_its_outputs_agree(tiny_checkpoint: Path, tmp_path: Path,
                                                               capsys) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--dtype", "fp32",
                 "--compare", "openvino,fp32", "--batch-sizes", "1,2", "--repeats", "2", "--model-only",
                 "--frame-size", "96x64", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    section = text[text.index("OpenVINO "):]
    assert "in its own process" in section and "INFERENCE_PRECISION_HINT" in section  # compared at f32 with fp32
    assert "PERFORMANCE_HINT=LATENCY" in section and "PERFORMANCE_HINT=THROUGHPUT, NUM_STREAMS=1" in section
    assert f"INFERENCE_NUM_THREADS={torch.get_num_threads()}" in section
    for batch in (1, 2):
        line = next(line for line in section.splitlines() if line.strip().startswith(f"batch {batch}:"))
        assert float(line.split("ours ")[2].split("x")[0]) > 0 and "LATENCY" in line and "THROUGHPUT" in line
    # f32 against our fp32 network on the same inputs: within what `lorat export` allows ONNX Runtime (onnx.py)
    from lorat_plugin.engine.onnx import TOLERANCE

    score_tol, box_tol = TOLERANCE["fp32"]
    agreement = next(line for line in section.splitlines() if "OpenVINO vs ours" in line)
    numbers = [float(word.rstrip(",")) for word in agreement.split() if "e-" in word or "e+" in word]
    assert numbers[0] <= score_tol and numbers[1] <= box_tol, agreement
    tracker = next(line for line in text.splitlines() if line.strip().startswith("OpenVINO") and "one-step" in line)
    assert float(tracker.split("one-step max ")[1].split(" px")[0]) < STEP_TOLERANCE_PX
    assert "OpenVINO" in "\n".join(json.loads(out.read_text())["notes"])


def test_compare_openvino_takes_an_exported_file_and_checks_it(tiny_checkpoint: Path, tmp_path: Path,
                                                               capsys) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    from lorat_plugin.engine.onnx import export_onnx

    model = build_model(checkpoint=tiny_checkpoint, merge=True)
    exported = export_onnx(model, tmp_path / "tiny.onnx")
    base = ["benchmark", "--checkpoint", str(tiny_checkpoint), "--batch-sizes", "1", "--repeats", "1",
            "--model-only"]
    assert main([*base, "--compare", f"openvino={exported}"]) == 0
    assert "on tiny.onnx, in its own process" in capsys.readouterr().out
    other = build_model(dataclasses.replace(model.config, depth=model.config.depth + 1), merge=True)
    export_onnx(other, tmp_path / "other.onnx")
    for path, message in ((tmp_path / "other.onnx", "another model"), (tmp_path / "none.onnx", "not found")):
        assert main([*base, "--compare", f"openvino={path}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_compare_openvino_without_the_extra_is_one_line(tiny_checkpoint: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: find_spec then finds nothing
    assert main(["benchmark", "--checkpoint", str(tiny_checkpoint), "--compare", "openvino", "--batch-sizes", "1",
                 "--repeats", "1", "--model-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'lorat-plugin[openvino]'" in err and "Traceback" not in err, err
