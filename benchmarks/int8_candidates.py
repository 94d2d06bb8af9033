"""Time candidate CPU int8 backends for LoRAT's merged transformer blocks against fp32 and the bf16 default.

B-224 (or --variant) with random weights, batch 1, interleaved repeats, medians and per-round ratios to the default.
Candidates: torch.ao dynamic quantisation (quantized::linear_dynamic; FBGEMM via the x86 engine), torchao's
Int8DynamicActivationInt8WeightConfig (eager), oneDNN qlinear kernels with dynamic per-tensor activations (the
engine's int8 backend, lorat_plugin.engine.int8), and ONNX Runtime on the int8 file `lorat export --dtype int8`
writes (its quantize_dynamic of the fp32 export); beside them, the bf16 default with int8's attention (what part of
int8's gain is attention).

    python benchmarks/int8_candidates.py --variant B-224 --threads 2 --repeats 9
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/int8_candidates.py
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

from lorat_plugin.process import tune_cpu_allocator
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


def bf16_with_int8_attention(model):
    """The bf16 default with int8's attention (bf16 logits) patched in: how much of int8's gain is attention."""
    from lorat_plugin.engine.int8 import Int8Block
    network = build_network(model, "cpu", "bf16", per_sequence=False)
    for block in network.module.blocks:
        block._attention = types.MethodType(Int8Block._attention, block)
        block.logits_bytes = Int8Block.logits_bytes
    return network


def onnx_runtime(model, threads: int, folder: Path):
    """The files `lorat export` writes: fp32, and int8 (only the blocks' products with a weight quantised)."""
    from lorat_plugin.engine.onnx import OnnxNetwork, export_onnx
    fp32 = export_onnx(model, folder / "fp32.onnx")
    int8 = export_onnx(model, folder / "int8.onnx", dtype="int8")
    return OnnxNetwork(int8, threads=threads), OnnxNetwork(fp32, threads=threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="B-224")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--skip", default="", help="comma-separated candidates to leave out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.variant}, batch 1, random weights")
    tune_cpu_allocator()
    torch.manual_seed(0)
    model = build_model(args.variant, merge=True).eval()
    inputs = model.get_sample_data(1)
    skip = set(args.skip.split(","))
    candidates = {"fp32": build_network(model, "cpu", "fp32")}
    if "bf16" not in skip:
        candidates["bf16 default"] = build_network(model, "cpu", "bf16")
    if "bf16-attention" not in skip:
        candidates["bf16 default, int8's attention"] = bf16_with_int8_attention(model)
    if "int8" not in skip:
        candidates["int8 oneDNN (engine)"] = build_network(model, "cpu", "int8")
    if "int8-fp32" not in skip:  # what CPUs without native bf16 run (and a CPU held below AVX512-BF16 needs)
        held = backends.cpu_has_native_bf16
        backends.cpu_has_native_bf16 = lambda: False  # what the int8 row builds where bf16 is not native
        try:
            candidates["int8 oneDNN, fp32 attention/norms"] = build_network(model, "cpu", "int8")
        finally:
            backends.cpu_has_native_bf16 = held
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
            print(f"{name}: score max|diff| {float((out[0].float() - reference[0]).abs().max()):.3g}, "
                  f"boxes {float((out[1].float() - reference[1]).abs().max()):.3g}")
        samples = time_interleaved(calls, repeats=args.repeats, warmup=2)
    base = "bf16 default" if "bf16 default" in samples else "fp32"
    print(f"| candidate | ms (median of {args.repeats}) | speed vs {base} | speed vs fp32 |")
    print("|---|---|---|---|")
    for name, times in samples.items():
        print(f"| {name} | {statistics.median(times) * 1e3:.1f} | {median_ratio(samples[base], times):.2f}x | "
              f"{median_ratio(samples['fp32'], times):.2f}x |")


if __name__ == "__main__":
    main()
