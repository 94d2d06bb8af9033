"""Why int8 stays under 3x fp32 where bf16 is not native: one block's attention (B-224: 12 heads, 320 tokens, head
size 64) with the fused fp32 kernel int8 runs there, against the int8 products PyTorch's CPU build offers for it,
and what fc1's GELU costs. Medians of ``--repeats`` calls, the rows timed in turn, ms per
block.

  ONEDNN_MAX_CPU_ISA=AVX2_VNNI ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
      python benchmarks/int8_attention_probe.py --repeats 30

Rows: the fused kernel (``scaled_dot_product_attention``, fp32); its parts as separate calls (fp32 ``q k^T``, the
softmax); ``q k^T`` on oneDNN's int8 linear kernel, one head at a time (``k`` packed as the weight on every call,
per-key scales, the logits written in fp32: what int8 attention would need, as the linear layers do it); and on
``torch._int_mm`` (the int8 product alone, no quantisation or scaling around it). Then fc1 (320 x 768 -> 3072) on
the int8 kernel with no activation, with its exact GELU applied as it writes (what ships where oneDNN runs AVX-512),
with ATen's exact GELU after it (what ships where oneDNN runs AVX2), and with the tanh approximation as it writes.
"""
from __future__ import annotations

import argparse
import statistics
import warnings

import torch
import torch.nn.functional as F

from lorat_plugin.engine.int8 import int8_linear, pack_int8_linear, quantize_dynamic
from lorat_plugin.speed import load_average, time_interleaved

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
        return [int8_linear(scaled_q[head], pack_int8_linear(k[0, head], None, TOKENS), torch.float32)
                for head in range(HEADS)]

    a = [torch.randint(-127, 128, (TOKENS, DEPTH), dtype=torch.int8) for _ in range(HEADS)]
    b = [torch.randint(-127, 128, (TOKENS, DEPTH), dtype=torch.int8).t() for _ in range(HEADS)]
    x = torch.randn(TOKENS, WIDTH)
    fc1 = pack_int8_linear(torch.randn(4 * WIDTH, WIDTH) * 0.02, None, TOKENS)
    values, scale, zero = quantize_dynamic(x)
    folded_bias = fc1.bias - scale * zero * fc1.column_sums  # as int8_linear hands it to the kernel

    def fc1_int8(activation: str, algorithm: str) -> torch.Tensor:
        # the kernel's own post-ops, on the input int8_linear hands it (zero point 0, the zero point in the bias)
        return torch.ops.onednn.qlinear_pointwise(values, scale, 0, fc1.packed, fc1.scales, fc1.zero_points,
                                                  folded_bias, 1.0, 0, torch.float32, activation, [], algorithm)

    rows = {
        "attention, fused fp32 kernel (what int8 runs here)": lambda: F.scaled_dot_product_attention(q, k, v),
        "q k^T, fp32 product": lambda: scaled_q @ k[0].transpose(-1, -2),
        "softmax of the logits, fp32": lambda: torch.softmax(logits, dim=-1),
        "q k^T, oneDNN int8 linear per head (k packed per call)": qk_int8_linear,
        "q k^T, torch._int_mm per head (the product alone)": lambda: [torch._int_mm(x_, y_) for x_, y_ in zip(a, b)],
        "fc1, int8, no activation": lambda: fc1_int8("none", ""),
        "fc1, int8, exact GELU as it writes (shipped where oneDNN runs AVX-512)": lambda: fc1_int8("gelu", "none"),
        "fc1, int8, then ATen's exact GELU (shipped where oneDNN runs AVX2)": lambda: F.gelu(fc1_int8("none", "")),
        "fc1, int8, tanh GELU as it writes": lambda: fc1_int8("gelu", "tanh"),
    }
    print(f"torch threads {torch.get_num_threads()}; load average before: {load_average()}")
    samples = time_interleaved(rows, repeats=args.repeats, warmup=3)
    print("| one block (B-224) | ms |")
    print("|---|---|")
    for name, seconds in samples.items():
        print(f"| {name} | {1e3 * statistics.median(seconds):.3f} |")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
