"""The transformer block's four linear layers at one frame's rows (B-224: 320 tokens, width 768), on each CPU kernel
the engine could run them with: PyTorch's ``F.linear`` on an fp32 weight (what the fp32 path runs; MKL's sgemm in
x86 builds), oneDNN's fp32 kernel on a weight packed once (``torch.ops.mkldnn._linear_pointwise``, the kernel the
bf16 default's fused blocks run at bf16), int8 (``lorat_plugin.engine.int8.int8_linear``: the input quantised on
the call, the zero point folded into the bias) and int8 with the zero point handed to the kernel instead (as before,
``int8_candidates.kernel_zero_point_linear``). Rows timed in turn, in one order and then the reverse, medians of
both passes' samples, ms per call and the rate reached::

    python benchmarks/linear_kernels.py --repeats 20
    ONEDNN_MAX_CPU_ISA=AVX2_VNNI ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/linear_kernels.py --repeats 20

The rate of a kernel at 320 rows, not a large product's, is what a frame gets (docs/speed.md, "CPU int8").
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from lorat_plugin.engine.int8 import int8_available, int8_linear, pack_int8_linear
from lorat_plugin.process import choose_threads
from lorat_plugin.speed import load_average, time_interleaved

from int8_candidates import kernel_zero_point_linear  # this folder's script, on the path when run as a script

ROWS, WIDTH = 320, 768
LAYERS = {"qkv": (3 * WIDTH, WIDTH), "proj": (WIDTH, WIDTH), "fc1": (4 * WIDTH, WIDTH), "fc2": (WIDTH, 4 * WIDTH)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="default: as the engine chooses")
    args = parser.parse_args()
    choose_threads(args.threads)
    torch.manual_seed(0)
    calls, flops = {}, {}
    for name, (outputs, inputs) in LAYERS.items():
        x, weight, bias = torch.randn(ROWS, inputs), torch.randn(outputs, inputs) * 0.02, torch.randn(outputs)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, ROWS)
        calls[f"{name}: fp32, F.linear (the fp32 path)"] = lambda x=x, w=weight, b=bias: F.linear(x, w, b)
        calls[f"{name}: fp32, oneDNN, packed weight"] = (
            lambda x=x, w=packed, b=bias: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""))
        if int8_available():
            layer = pack_int8_linear(weight, bias, ROWS)
            calls[f"{name}: int8 (--dtype int8)"] = lambda x=x, layer=layer: int8_linear(x, layer, torch.float32)
            before = pack_int8_linear(weight, bias, ROWS)  # its own copy: not the int8 row's weights, warm in cache
            calls[f"{name}: int8, the zero point handed to the kernel (before)"] = (
                lambda x=x, layer=before: kernel_zero_point_linear(x, layer, torch.float32))
        for key in calls:
            flops.setdefault(key, 2.0 * ROWS * inputs * outputs)
    print(f"torch threads {torch.get_num_threads()}; load average before: {load_average()}")
    # two passes, the second in reverse order, pooled: a row that always ran right after another would find that
    # row's leftovers in cache (its input, its allocations), which moved the int8 rows by 10-20 % in trials
    forward = time_interleaved(calls, repeats=args.repeats, warmup=3)
    backward = time_interleaved(dict(reversed(list(calls.items()))), repeats=args.repeats, warmup=3)
    samples = {key: forward[key] + backward[key] for key in calls}
    print(f"| layer ({ROWS} rows): kernel | ms | TFLOPS (int8: TOPS) |")
    print("|---|---|---|")
    for key, seconds in samples.items():
        median = statistics.median(seconds)
        print(f"| {key} | {1e3 * median:.3f} | {flops[key] / median / 1e12:.2f} |")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
