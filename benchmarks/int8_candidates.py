"""Time candidate CPU int8 backends for LoRAT's merged transformer blocks against fp32 and the bf16 default.

B-224 (or --variant) with random weights, batch 1, interleaved repeats, medians and per-round ratios to the default.
Candidates: torch.ao dynamic quantisation (quantized::linear_dynamic; FBGEMM via the x86 engine), torchao's
Int8DynamicActivationInt8WeightConfig (eager), oneDNN qlinear kernels with dynamic per-tensor activations (the
engine's int8 backend, lorat_plugin.engine.int8), and ONNX Runtime on the int8 file `lorat export --dtype int8`
writes (its quantize_dynamic of the fp32 export); beside them, two changes to the engine's int8 tried and not shipped
(docs/speed.md, "Where the time goes"): its head's hidden layers on the int8 kernels too (``int8-head``), and, where
bf16 is not native, its attention as per-group fp32 matrix products instead of the fused kernel (``int8-grouped``);
and the engine's int8 as it was before the activations' zero point went into the bias, with fc1's GELU always in
the kernel (``int8-kernel-zero-point``).

    python benchmarks/int8_candidates.py --variant B-224 --threads 2 --repeats 9
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/int8_candidates.py
    ONEDNN_MAX_CPU_ISA=AVX2_VNNI ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/int8_candidates.py --repeats 7 --layer-scale 0.1,1 --skip bf16,torch.ao,torchao,ort

``--layer-scale LOW,HIGH`` draws LayerScale from U(LOW, HIGH): with its 1e-5 initial value the random blocks vanish
from the residual stream, and the score differences printed say nothing about int8.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import types
from pathlib import Path

import torch
from torch import nn

from lorat_plugin.process import choose_threads, tune_cpu_allocator
from lorat_plugin.engine import backends
from lorat_plugin.engine.backends import build_network
from lorat_plugin.model import build_model
from lorat_plugin.speed import median_ratio, time_interleaved


def _linears_to_int8(model, quantize) -> None:
    for block in model.blocks:
        quantize(block)


def torch_ao(model):
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    fast = copy.deepcopy(model).eval()
    for i, block in enumerate(fast.blocks):
        fast.blocks[i] = quantize_dynamic(block, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return lambda *inputs: fast(*inputs)


def torchao(model):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    fast = copy.deepcopy(model).eval()
    quantize_(fast.blocks, Int8DynamicActivationInt8WeightConfig())
    return lambda *inputs: fast(*inputs)


class Int8HeadLinear(nn.Module):
    """A head hidden layer on the engine's int8 kernels (int8 weights per output channel, the input quantised per
    call over its own range), for the ``int8-head`` candidate."""

    def __init__(self, layer: nn.Linear, rows: int) -> None:
        super().__init__()
        from lorat_plugin.engine.int8 import pack_int8_linear
        self.layer = pack_int8_linear(layer.weight, layer.bias, rows)
        self.weight = torch.empty(0)  # MlpHead casts its input to its first layer's weight dtype: fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from lorat_plugin.engine.int8 import int8_linear
        return int8_linear(x.reshape(-1, x.shape[-1]), self.layer, torch.float32).view(*x.shape[:-1], -1)


def int8_with_int8_head(model):
    network = build_network(model, "cpu", "int8", per_sequence=False)
    rows = model.config.search_grid ** 2
    for mlp in (network.module.head.cls_mlp, network.module.head.reg_mlp):
        for i in range(len(mlp.layers) - 1):
            mlp.layers[i] = Int8HeadLinear(mlp.layers[i], rows)
    return network


def int8_with_grouped_attention(model):
    """int8 where bf16 is not native, with the bf16 blocks' per-group attention in fp32 instead of the fused kernel."""
    from lorat_plugin.engine.onednn import OneDNNBlock, grouped_attention

    def attention(block, q, k, v):
        return grouped_attention(q, k, v, OneDNNBlock.logits_bytes)

    network = build_network(model, "cpu", "int8", per_sequence=False)
    for block in network.module.blocks:
        block._attention = types.MethodType(attention, block)
    return network


def kernel_zero_point_linear(x: torch.Tensor, layer, dtype: torch.dtype, gelu: bool = False,
                             residual: torch.Tensor | None = None) -> torch.Tensor:
    """``int8_linear`` as it was before the zero point went into the bias, kept here as a frozen copy to time against:
    the zero point handed to the kernel (which then sums the weight's columns on every call), GELU applied by the
    kernel on every CPU; no nan guard."""
    from lorat_plugin.engine.int8 import quantize_dynamic

    values, scale, zero = quantize_dynamic(x)
    weight = (layer.packed, layer.scales, layer.zero_points)
    if residual is not None:
        return torch.ops.onednn.qlinear_pointwise.binary(values, scale, zero, *weight, residual, layer.bias, 1.0, 0,
                                                         dtype, 1.0, 0, "add", 1.0, "none", [], "")
    return torch.ops.onednn.qlinear_pointwise(values, scale, zero, *weight, layer.bias, 1.0, 0, dtype,
                                              "gelu" if gelu else "none", [], "none" if gelu else "")


def int8_with_kernel_zero_point(model):
    network = build_network(model, "cpu", "int8", per_sequence=False)
    for block in network.module.blocks:
        block._linear = types.MethodType(
            lambda self, x, packed, gelu=False, residual=None: kernel_zero_point_linear(x, packed, self._dtype, gelu,
                                                                                     residual), block)
    return network


def onnx_runtime(model, threads: int, folder: Path):
    """The files `lorat export` writes: fp32, and int8 (only the blocks' products with a weight quantised)."""
    from lorat_plugin.engine.onnx import OnnxNetwork, export_onnx
    fp32 = export_onnx(model, folder / "fp32.onnx")
    int8 = export_onnx(model, folder / "int8.onnx", dtype="int8")
    return OnnxNetwork(int8, threads=threads), OnnxNetwork(fp32, threads=threads)


def random_model(variant: str, layer_scale: str | None) -> nn.Module:
    """The merged ``variant`` with random weights (seed 0); ``layer_scale`` "LOW,HIGH" draws LayerScale from
    U(LOW, HIGH)."""
    torch.manual_seed(0)
    model = build_model(variant, merge=True).eval()
    if layer_scale:
        low, high = (float(v) for v in layer_scale.split(","))
        for block in model.blocks:
            block.ls1.gamma.data.uniform_(low, high)
            block.ls2.gamma.data.uniform_(low, high)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="B-224")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--skip", default="", help="comma-separated candidates to leave out")
    parser.add_argument("--layer-scale", metavar="LOW,HIGH", help="draw LayerScale from U(LOW, HIGH)")
    args = parser.parse_args()
    choose_threads(args.threads)  # the count every engine of this run keeps
    print(f"torch {torch.__version__}, {args.threads} threads, {args.variant}, batch 1, random weights")
    tune_cpu_allocator()
    model = random_model(args.variant, args.layer_scale)
    inputs = model.get_sample_data(1)
    skip = set(args.skip.split(","))
    candidates = {"fp32": build_network(model, "cpu", "fp32")}
    if "bf16" not in skip:
        candidates["bf16 default"] = build_network(model, "cpu", "bf16")
    if "int8" not in skip:
        candidates["int8 oneDNN (engine)"] = build_network(model, "cpu", "int8")
    if "int8-fp32" not in skip:  # what CPUs without native bf16 run (and a CPU held below AVX512-BF16 needs)
        held = backends.cpu_has_native_bf16
        backends.cpu_has_native_bf16 = lambda: False  # what the int8 row builds where bf16 is not native
        try:
            candidates["int8 oneDNN, fp32 attention/norms"] = build_network(model, "cpu", "int8")
        finally:
            backends.cpu_has_native_bf16 = held
    if "int8-kernel-zero-point" not in skip:
        candidates["int8 oneDNN, zero point and GELU in the kernel (before)"] = int8_with_kernel_zero_point(model)
    if "int8-head" not in skip:
        candidates["int8 oneDNN, head's hidden layers int8 too (not shipped)"] = int8_with_int8_head(model)
    if "int8-grouped" not in skip and not backends.cpu_has_native_bf16():
        candidates["int8 oneDNN, per-group fp32 attention (not shipped)"] = int8_with_grouped_attention(model)
    if "torch.ao" not in skip:
        candidates["torch.ao dynamic (x86/FBGEMM)"] = torch_ao(model)
    if "torchao" not in skip:
        try:
            candidates["torchao int8 dyn (eager)"] = torchao(model)
        except ImportError as e:  # an optional candidate: `pip install torchao`
            print(f"torchao candidate skipped: {e}")
    folder = Path(tempfile.mkdtemp())
    if "ort" not in skip:
        candidates["ORT int8 file (lorat export)"], candidates["ORT fp32"] = onnx_runtime(model, args.threads, folder)
    reference = candidates["fp32"](*inputs)
    with torch.inference_mode():
        calls = {name: (lambda f=f: f(*inputs)) for name, f in candidates.items()}
        for name, f in candidates.items():
            out = f(*inputs)
            score = float((out[0].float() - reference[0]).abs().max())
            print(f"{name}: score max|diff| {score:.3g} ({score / float(reference[0].abs().max()):.3g} of the "
                  f"largest |logit|), boxes {float((out[1].float() - reference[1]).abs().max()):.3g}")
        samples = time_interleaved(calls, repeats=args.repeats, warmup=2)
    base = "bf16 default" if "bf16 default" in samples else "fp32"
    print(f"| candidate | ms (median of {args.repeats}) | speed vs {base} | speed vs fp32 |")
    print("|---|---|---|---|")
    for name, times in samples.items():
        print(f"| {name} | {statistics.median(times) * 1e3:.1f} | {median_ratio(samples[base], times):.2f}x | "
              f"{median_ratio(samples['fp32'], times):.2f}x |")


if __name__ == "__main__":
    main()
