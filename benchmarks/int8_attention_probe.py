"""Why int8 stays under 3x fp32 where bf16 is not native: one block's attention (B-224: 12 heads, 320 tokens, head
size 64) with the fused fp32 kernel int8 runs there, against the int8 products PyTorch's CPU build offers for it,
and the cost of the GELU fc1 applies as it writes. Medians of ``--repeats`` calls, the rows timed in turn, ms per
block.

  ONEDNN_MAX_CPU_ISA=AVX2_VNNI ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
      python benchmarks/int8_attention_probe.py --repeats 30

Rows: the fused kernel (``scaled_dot_product_attention``, fp32); its parts as separate calls (fp32 ``q k^T``, the
softmax); ``q k^T`` on oneDNN's int8 linear kernel, one head at a time (``k`` packed as the weight on every call,
per-key scales, the logits written in fp32: what int8 attention would need, as the linear layers do it); and on
``torch._int_mm`` (the int8 product alone, no quantisation or scaling around it). Then fc1 (320 x 768 -> 3072) on
the int8 kernel with no activation, with its exact GELU applied as it writes (the shipped path), and with the tanh
approximation.
"""
from __future__ import annotations

import argparse
import os
import statistics
import warnings

import torch
import torch.nn.functional as F

from lorat_plugin.engine.int8 import pack_int8_weight, quantize_dynamic
from lorat_plugin.speed import time_interleaved

# quantize_per_tensor is deprecated in torch 2.14; this probe uses it as lorat_plugin.engine.int8 does
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
HEADS, TOKENS, DEPTH, WIDTH = 12, 320, 64, 768


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, TOKENS, DEPTH) for _ in range(3))
    scaled_q = q[0] * DEPTH ** -0.5
    logits = scaled_q @ k[0].transpose(-1, -2)

    def qk_int8_linear() -> list[torch.Tensor]:
        out = []
        for head in range(HEADS):
            values, scale, zero = quantize_dynamic(scaled_q[head])
            packed, scales, zeros = pack_int8_weight(k[0, head], TOKENS)
            out.append(torch.ops.onednn.qlinear_pointwise(values, scale, zero, packed, scales, zeros, None, 1.0, 0,
                                                          torch.float32, "none", [], ""))
        return out

    a = [torch.randint(-127, 128, (TOKENS, DEPTH), dtype=torch.int8) for _ in range(HEADS)]
    b = [torch.randint(-127, 128, (TOKENS, DEPTH), dtype=torch.int8).t() for _ in range(HEADS)]
    x = torch.randn(TOKENS, WIDTH)
    fc1 = pack_int8_weight(torch.randn(4 * WIDTH, WIDTH) * 0.02, TOKENS)
    bias = torch.zeros(4 * WIDTH)
    values, scale, zero = quantize_dynamic(x)

    def fc1_int8(activation: str, algorithm: str) -> torch.Tensor:
        return torch.ops.onednn.qlinear_pointwise(values, scale, zero, *fc1, bias, 1.0, 0, torch.float32, activation,
                                                  [], algorithm)

    rows = {
        "attention, fused fp32 kernel (what int8 runs here)": lambda: F.scaled_dot_product_attention(q, k, v),
        "q k^T, fp32 product": lambda: scaled_q @ k[0].transpose(-1, -2),
        "softmax of the logits, fp32": lambda: torch.softmax(logits, dim=-1),
        "q k^T, oneDNN int8 linear per head (k packed per call)": qk_int8_linear,
        "q k^T, torch._int_mm per head (the product alone)": lambda: [torch._int_mm(x_, y_) for x_, y_ in zip(a, b)],
        "fc1, int8, no activation": lambda: fc1_int8("none", ""),
        "fc1, int8, exact GELU as it writes (shipped)": lambda: fc1_int8("gelu", "none"),
        "fc1, int8, tanh GELU as it writes": lambda: fc1_int8("gelu", "tanh"),
    }
    print(f"torch threads {torch.get_num_threads()}; load average before: {os.getloadavg()}")
    samples = time_interleaved(rows, repeats=args.repeats, warmup=3)
    print("| one block (B-224) | ms |")
    print("|---|---|")
    for name, seconds in samples.items():
        print(f"| {name} | {1e3 * statistics.median(seconds):.3f} |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
