"""CPU int8 (`--dtype int8`): oneDNN int8 transformer blocks, their agreement with fp32 at the tolerances
docs/speed.md states, the int8 ONNX file, and where int8 is refused. No timed assertions."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lorat_plugin.cli import main
from lorat_plugin.engine import TrackingEngine
from lorat_plugin.engine import precision
from lorat_plugin.engine import backends
from lorat_plugin.engine.backends import build_network
from lorat_plugin.engine.int8 import Int8Block, int8_available, int8_linear, pack_int8_linear, quantize_dynamic
from lorat_plugin.engine.precision import precision_name, resolve_precision
from lorat_plugin.model import ModelConfig, build_model
from lorat_plugin.speed import compare_with_fp32

from conftest import TRACKING_FIXTURE


pytestmark = pytest.mark.skipif(not int8_available(), reason="this torch build has no oneDNN int8 kernels")

# The tolerances docs/speed.md states for int8 against fp32 (those of bf16): score logits relative to the largest
# |logit|, boxes in normalised search-crop units; one tracker step from the same previous box, p95 in frame pixels.
NETWORK_TOLERANCE = (0.02, 2e-3)
STEP_P95_PX = 0.5


def _tiny_model(config: ModelConfig, ffn: str = "mlp") -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(config, ffn=ffn), merge=True)
    for block in model.blocks:  # LayerScale away from its 1e-5 init, so the blocks' int8 products matter
        block.ls1.gamma.data.uniform_(0.5, 1.5)
        block.ls2.gamma.data.uniform_(0.5, 1.5)
    return model


def _within_tolerance(out: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> bool:
    score_tol, box_tol = NETWORK_TOLERANCE
    return bool((out[0] - reference[0]).abs().max() <= score_tol * reference[0].abs().max()
                and (out[1] - reference[1]).abs().max() <= box_tol)


def test_dynamic_quantisation_keeps_zero_exact_and_the_range() -> None:
    x = torch.tensor([[-1.0, 0.0, 0.5, 3.0]])
    values, scale, zero = quantize_dynamic(x.bfloat16())
    assert values.dtype == torch.uint8 and values[0, 1] == zero
    assert torch.allclose((values.float() - zero) * scale, x, atol=scale / 2 + 1e-6)
    big = torch.randn(64, 96).bfloat16()
    values, scale, zero = quantize_dynamic(big)  # a plain uint8 tensor over the quantised bytes, torch's rounding
    assert type(values) is torch.Tensor and not values.is_quantized and values.shape == big.shape
    assert torch.equal(values, torch.quantize_per_tensor(big.float(), scale, zero, torch.quint8).int_repr())
    assert quantize_dynamic(torch.zeros(3, 4))[0].eq(0).all()
    assert quantize_dynamic(torch.tensor([[1.0, float("nan")]])) is None
    assert quantize_dynamic(torch.tensor([[1.0, float("inf")]])) is None


@pytest.mark.parametrize("post", ["none", "gelu", "residual"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_zero_point_folded_into_the_bias_is_the_kernels_own(post: str, dtype: torch.dtype) -> None:
    # int8_linear hands the kernel a zero point of 0 and moves scale * zero * column sums into the bias; the
    # kernel's own handling of the zero point (slower: it sums the weight's columns per call) gives the same values
    torch.manual_seed(0)
    x = (torch.randn(40, 96) + 0.7).to(dtype)  # an off-centre range: a zero point far from 0 and 255
    weight, bias = torch.randn(64, 96) * 0.1, torch.randn(64)
    layer = pack_int8_linear(weight, bias, rows=40)
    residual = torch.randn(40, 64).to(dtype) if post == "residual" else None
    values, scale, zero = quantize_dynamic(x)
    assert 20 < zero < 235
    packed = (layer.packed, layer.scales, layer.zero_points)
    if residual is not None:
        kernel = torch.ops.onednn.qlinear_pointwise.binary(values, scale, zero, *packed, residual, layer.bias, 1.0, 0,
                                                           dtype, 1.0, 0, "add", 1.0, "none", [], "")
    else:
        kernel = torch.ops.onednn.qlinear_pointwise(values, scale, zero, *packed, layer.bias, 1.0, 0, dtype,
                                                    post, [], "none" if post == "gelu" else "")
    folded = int8_linear(x, layer, dtype, gelu=post == "gelu", residual=residual)
    assert folded.dtype == dtype and folded.shape == (40, 64)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2  # the bf16 output's own rounding
    assert torch.allclose(folded.float(), kernel.float(), rtol=tolerance, atol=tolerance)
    exact = (values.float() - zero) * scale @ (layer.scales[:, None] * torch.round(weight / layer.scales[:, None])).t()
    exact = exact + bias
    exact = torch.nn.functional.gelu(exact) if post == "gelu" else exact
    exact = exact + residual.float() if residual is not None else exact
    assert torch.allclose(folded.float(), exact, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("cap, flags, in_kernel", [
    ("", ["AVX512-VNNI", "AVX512F", "AVX2"], True),
    ("AVX2_VNNI", ["AVX512-VNNI", "AVX512F", "AVX2"], False),  # held to AVX2: as on a laptop without AVX-512
    ("", ["AVX-VNNI", "AVX2"], False),
    ("AVX512_CORE_VNNI", ["AVX512-VNNI", "AVX512F", "AVX2"], True),
])
def test_fc1s_gelu_runs_where_it_is_faster_and_gives_the_same_values(monkeypatch, tiny_config, cap: str,
                                                                      flags: list[str], in_kernel: bool) -> None:
    # oneDNN's GELU as the kernel writes is slower than ATen's where oneDNN runs AVX2 code (docs/speed.md). The cap
    # is patched where precision reads it, not set in the environment: oneDNN reads ONEDNN_MAX_CPU_ISA once per
    # process, and a real value would hold every later test's kernels.
    import lorat_plugin.environment

    monkeypatch.setattr(lorat_plugin.environment, "instruction_sets", lambda: flags)
    monkeypatch.setattr(precision, "onednn_isa_cap", lambda: cap)
    model = _tiny_model(tiny_config)
    block = Int8Block(model.blocks[0], tokens=40, dtype=torch.float32)
    assert block.gelu_in_kernel is in_kernel
    aten_gelu = torch.nn.functional.gelu
    calls = []
    monkeypatch.setattr(torch.nn.functional, "gelu", lambda *args, **kwargs: calls.append(1) or aten_gelu(*args,
                                                                                                         **kwargs))
    x = torch.randn(1, 40, tiny_config.embed_dim)
    out = block(x)
    assert len(calls) == (0 if in_kernel else 1)  # ATen's GELU runs once per block call, or never
    block.gelu_in_kernel = not in_kernel
    assert torch.allclose(block(x), out, rtol=1e-4, atol=1e-5)
    assert len(calls) == 1


def test_non_finite_activations_come_out_as_nan(tiny_config) -> None:
    block = Int8Block(_tiny_model(tiny_config).blocks[0], tokens=40, dtype=torch.float32)
    x = torch.randn(1, 40, tiny_config.embed_dim)
    assert torch.isfinite(block(x)).all()
    x[0, 3, 5] = float("inf")
    assert torch.isnan(block(x)).any()  # as the fp32 block: the engine reports it (confidence 0, a warning)


@pytest.mark.parametrize("heads_per_call", [None, 1, 4])  # None: all heads of a frame in one product
def test_int8_attention_matches_the_fused_kernel_at_bf16_tolerance(monkeypatch, tiny_config,
                                                                  heads_per_call: int | None) -> None:
    block = Int8Block(_tiny_model(tiny_config).blocks[0], tokens=40, dtype=torch.bfloat16)
    if heads_per_call:
        monkeypatch.setattr(Int8Block, "logits_bytes", heads_per_call * 2 * 40 * 40)
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 40, 64) * 2).bfloat16().unbind(0)  # logits up to ~30: softmax near one-hot
    sdpa = torch.nn.functional.scaled_dot_product_attention
    reference = sdpa(q.float(), k.float(), v.float())
    fused_error = (sdpa(q, k, v).float() - reference).abs().max()
    assert (block._attention(q, k, v).float() - reference).abs().max() <= 10 * fused_error


@pytest.mark.parametrize("native_bf16", [True, False])
@pytest.mark.parametrize("ffn", ["mlp", "swiglu"])
def test_int8_blocks_match_fp32_within_the_stated_tolerance(monkeypatch, native_bf16: bool, ffn: str,
                                                            tiny_config) -> None:
    model = _tiny_model(tiny_config, ffn)
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: native_bf16)
    inputs = model.get_sample_data(3)
    reference = build_network(model, "cpu", "fp32")(*inputs)
    int8 = build_network(model, "cpu", "int8", per_sequence=False)
    assert int8.dtype == torch.int8
    assert all(type(block) is Int8Block for block in int8.module.blocks)
    compute = torch.bfloat16 if native_bf16 else torch.float32  # attention and norms: bf16 only where native
    assert int8.module.blocks[0].norm1.weight.dtype == compute and int8.module.norm.weight.dtype == torch.float32
    assert int8.description.startswith("int8 blocks") and str(compute).split(".")[1] in int8.description
    out = int8(*inputs)
    assert out[0].dtype == out[1].dtype == torch.float32
    assert _within_tolerance(out, reference)
    # the products really are int8: the int8 network is neither the fp32 nor the bf16 one
    assert not torch.equal(out[1], reference[1]) and not torch.equal(out[1], build_network(model, "cpu", "bf16")(*inputs)[1])
    one = int8(*(t[:1] for t in inputs))  # packed for one frame, any batch size runs
    assert torch.allclose(one[1], out[1][:1], atol=1e-3)  # batched: one activation scale for the three
    per_sequence = build_network(model, "cpu", "int8")(*inputs)
    assert torch.equal(per_sequence.boxes[:1], one.boxes)


def test_int8_is_cpu_only_and_opt_in(tiny_config) -> None:
    assert resolve_precision("int8", "cpu") == torch.int8 and precision_name(torch.int8) == "int8"
    for device in ("cuda", "cuda:1", "mps"):
        with pytest.raises(ValueError, match="int8 runs on cpu only"):
            resolve_precision("int8", device)
    model = _tiny_model(tiny_config)
    with pytest.raises(ValueError, match="int8"):
        build_network(model, "cpu", "int8", autocast=True)
    with pytest.raises(ValueError, match="compiled"):
        build_network(model, "cpu", "int8", compile=True)
    assert precision.default_precision("cpu") != torch.int8  # never a default


@pytest.mark.slow
def test_int8_on_the_reference_fixtures(reference_tracking, reference_case) -> None:
    model, frames, init = reference_tracking()
    io = reference_case(TRACKING_FIXTURE).inputs
    inputs = (io["z"], io["x"], io["z_feat_mask"])
    assert _within_tolerance(build_network(model, "cpu", "int8")(*inputs), build_network(model, "cpu", "fp32")(*inputs))
    agreement = compare_with_fp32(TrackingEngine(model, device="cpu", dtype="fp32"),
                                  TrackingEngine(model, device="cpu", dtype="int8"), frames, init)
    assert np.percentile(agreement.step_px, 95) <= STEP_P95_PX, agreement.summary()
    assert np.all(np.isfinite(agreement.closed_iou))


def test_int8_onnx_round_trip(tmp_path: Path, tiny_config) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from lorat_plugin.engine.onnx import OnnxNetwork, check_onnx, export_onnx

    model = _tiny_model(tiny_config)
    path = export_onnx(model, tmp_path / "tiny-int8.onnx", dtype="int8")
    graph = onnx.load(str(path)).graph
    quantized = [node.name for node in graph.node if node.op_type == "MatMulInteger"]
    assert len(quantized) == 4 * model.config.depth and all("/blocks." in name for name in quantized)
    network = OnnxNetwork(path)
    assert network.precision == "int8" and network.dtype == torch.int8
    check_onnx(path, model)  # raises beyond the tolerance
    inputs = model.get_sample_data(2)
    out = network(*inputs)
    assert _within_tolerance(out, build_network(model, "cpu", "fp32")(*inputs))
    assert not torch.equal(out[1], build_network(model, "cpu", "fp32")(*inputs)[1])


def test_int8_onnx_round_trip_on_the_reference_fixture(tmp_path: Path, reference_tracking) -> None:
    pytest.importorskip("onnxruntime")
    from lorat_plugin.engine.onnx import check_onnx, export_onnx

    model, _, _ = reference_tracking()
    check_onnx(export_onnx(model, tmp_path / "fixture-int8.onnx", dtype="int8"), model)


def test_dtype_int8_on_the_command_line(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert main(["benchmark", "--checkpoint", str(tiny_checkpoint), "--dtype", "int8", "--compare", "bf16,fp32",
                 "--model-only", "--batch-sizes", "1", "--repeats", "1", "--frame-size", "96x64"]) == 0
    text = capsys.readouterr().out
    assert "int8 blocks" in text and "stored bf16 weights" in text and "fp32 weights" in text
    assert text.count("one-step max") == 2 and "agreement with fp32" in text
    assert len(re.findall(r"batch 1: network \d+\.\d\dx", text)) == 2  # the two others over the CPU's default
    path = tmp_path / "tiny-int8.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "-o", str(path), "--dtype", "int8"]) == 0
    assert "int8" in capsys.readouterr().out
    assert main(["benchmark", "--checkpoint", str(tiny_checkpoint), "--dtype", "int8", "--device", "cuda"]) == 2
    assert "int8" in capsys.readouterr().err or not torch.cuda.is_available()


@pytest.mark.parametrize("flags, cap, warned", [
    (["AMX-BF16", "AMX-INT8", "AVX512-BF16"], "", True),
    (["AMX-INT8"], "", True),
    (["AMX-BF16", "AMX-INT8", "AVX512-BF16"], "AVX512_CORE_BF16", False),  # oneDNN held below AMX: int8 pays
    (["AVX512-BF16", "AVX512-VNNI"], "", False),                           # no AMX (AMD Zen 4): int8 pays
])
def test_int8_says_once_that_it_is_slower_on_amx(monkeypatch, caplog, flags: list[str], cap: str,
                                                 warned: bool) -> None:
    import lorat_plugin.environment

    monkeypatch.setattr(lorat_plugin.environment, "instruction_sets", lambda: flags)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    precision._warn_int8_cost.cache_clear()
    with caplog.at_level("WARNING", logger="lorat_plugin.engine.precision"):
        for _ in range(2):  # the CLI resolves the precision, then build_network again
            assert resolve_precision("int8", "cpu") == torch.int8
        resolve_precision("bf16", "cpu")
    lines = [r.getMessage() for r in caplog.records if r.name == "lorat_plugin.engine.precision"]
    precision._warn_int8_cost.cache_clear()
    if not warned:
        assert lines == []
        return
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert precision.INT8_ON_AMX in lines[0] and "docs/speed.md" in lines[0] and "--dtype int8" in lines[0]
    # the figure the line cites is the one the docs record, beside the command that measured it
    docs = (Path(__file__).resolve().parents[1] / "docs" / "speed.md").read_text(encoding="utf-8")
    assert "int8 on AMX" in docs and "0.81x" in docs and re.search(r"0\.81x", precision.INT8_ON_AMX)
