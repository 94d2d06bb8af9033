"""Attention candidates for the bf16 default on CPU: times and errors on the network's own q, k, v.

Builds the bf16 default network (B-224 or --variant, random weights, batch 1), records the ``q, k, v`` each fused
block hands to its attention on the sample inputs, then times every candidate on all blocks' tensors interleaved
(round-robin repeats, medians, per-round ratios to the fused ``scaled_dot_product_attention`` kernel) and reports
each candidate's error against fp64 attention on the same bf16 inputs. Candidates that could replace the default
also run inside the whole network, timed the same way, whose score logits and boxes are compared with the fp32
network against the bf16 tolerances of ``tests/test_speed.py`` (docs/speed.md, "Where the time goes")::

    python benchmarks/attention_candidates.py --threads 1 --repeats 9 --layer-scale 0.1,1
    python benchmarks/attention_candidates.py --threads 2 --repeats 9 --layer-scale 0.1,1
    python benchmarks/attention_candidates.py --variant demo --threads 1 --repeats 9 --demo-sequences 16

Random weights give nearly flat attention, where rounding the logits costs little; the trained demo model's
attention is peaked, and its rows show what rounding the largest logits costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from lorat_plugin.engine.backends import build_network
from lorat_plugin.engine.onednn import OneDNNBlock, grouped_attention
from lorat_plugin.model.sources import load_model
from lorat_plugin.process import choose_threads, tune_cpu_allocator
from lorat_plugin.speed import median_ratio, time_interleaved

from int8_candidates import random_model  # this folder's script, on the path when run as a script

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
BF16_SCORE_TOLERANCE, BF16_BOX_TOLERANCE = 0.02, 2e-3  # tests/test_speed.py's NETWORK_TOLERANCE for bf16


def fused_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v)


def math_path(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


def fused_kernel_fp32(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)


def fused_kernel_contiguous(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())


def all_heads_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    return torch.softmax(logits, dim=-1) @ v


def grouped_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return grouped_attention(q, k, v, OneDNNBlock.logits_bytes)


def grouped_bf16_shifted(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return grouped_attention(q, k, v, OneDNNBlock.logits_bytes, shift_logits=True)


def grouped_bf16_fp32_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """bf16 logits, softmax in fp32 (rounded to bf16 for the second product)."""
    batch, heads, tokens, _ = q.shape
    q = q * q.shape[-1] ** -0.5
    out = torch.empty(q.shape, dtype=q.dtype)
    step = max(1, OneDNNBlock.logits_bytes // (q.element_size() * tokens * tokens))
    for b in range(batch):
        for h in range(0, heads, step):
            group = slice(h, h + step)
            logits = q[b, group] @ k[b, group].transpose(-1, -2)
            weights = torch.softmax(logits, dim=-1, dtype=torch.float32).to(q.dtype)
            torch.matmul(weights, v[b, group], out=out[b, group])
    return out


def grouped_fp32_logits(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """fp32 q k^T (the default's logit precision) and softmax, bf16 weights times v."""
    batch, heads, tokens, _ = q.shape
    q32, k32 = (q * q.shape[-1] ** -0.5).float(), k.float()
    out = torch.empty(q.shape, dtype=q.dtype)
    step = max(1, OneDNNBlock.logits_bytes // (4 * tokens * tokens))
    for b in range(batch):
        for h in range(0, heads, step):
            group = slice(h, h + step)
            logits = q32[b, group] @ k32[b, group].transpose(-1, -2)
            weights = torch.softmax(logits, dim=-1).to(q.dtype)
            torch.matmul(weights, v[b, group], out=out[b, group])
    return out


CANDIDATES: dict[str, Attention] = {
    "fused kernel, bf16 q/k/v (the default before)": fused_kernel,
    "fused kernel, contiguous q/k/v": fused_kernel_contiguous,
    "fused kernel, fp32 q/k/v": fused_kernel_fp32,
    "SDPA math path": math_path,
    "bf16 matmuls, all heads at once": all_heads_bf16,
    "bf16 matmuls per group of heads (int8's)": grouped_bf16,
    "bf16 matmuls per group, logits shifted by their estimated maximum (shipped)": grouped_bf16_shifted,
    "bf16 matmuls per group, fp32 softmax": grouped_bf16_fp32_softmax,
    "fp32 q k^T per group, bf16 p v": grouped_fp32_logits,
}
IN_THE_NETWORK = ["fused kernel, bf16 q/k/v (the default before)",
                  "bf16 matmuls per group of heads (int8's)",
                  "bf16 matmuls per group, logits shifted by their estimated maximum (shipped)",
                  "fp32 q k^T per group, bf16 p v"]


def record_attention_inputs(network: torch.nn.Module, inputs: tuple) -> list[tuple[torch.Tensor, ...]]:
    """The (q, k, v) every fused block passes to its attention, as passed (strided views of the qkv output)."""
    recorded: list[tuple[torch.Tensor, ...]] = []
    blocks = [m for m in network.module.modules() if isinstance(m, OneDNNBlock)]
    if not blocks:
        raise SystemExit("no oneDNN fused blocks in the bf16 network: this CPU has no native bf16 or no oneDNN")
    for block in blocks:
        def capture(self, q, k, v, original=block._attention):
            recorded.append((q, k, v))
            return original(q, k, v)
        block._attention = types.MethodType(capture, block)
    with torch.inference_mode():
        network(*inputs)
    for block in blocks:
        del block._attention
    return recorded


def with_attention(network: torch.nn.Module, attention: Attention) -> None:
    for block in network.module.modules():
        if isinstance(block, OneDNNBlock):
            block._attention = types.MethodType(lambda self, q, k, v: attention(q, k, v), block)


def demo_split_agreement(model: torch.nn.Module, sequences: int) -> None:
    """One tracker step against fp32 (``compare_with_fp32``) over the first ``sequences`` of the shipped demo test
    split, with each candidate as every fused block's attention."""
    import numpy as np
    from PIL import Image

    from lorat_plugin.demo.procedural import make_benchmark
    from lorat_plugin.engine import TrackingEngine
    from lorat_plugin.speed import compare_with_fp32

    steps: dict[str, list[np.ndarray]] = {name: [] for name in IN_THE_NETWORK}
    shipped = OneDNNBlock._attention
    with tempfile.TemporaryDirectory() as folder:
        split = make_benchmark(folder, split="test", sequences=sequences, frames=100, size=(320, 240), seed=0)
        try:
            for sequence in split.folders:
                frames = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(sequence.glob("*.jpg"))]
                first_box = np.loadtxt(sequence / "groundtruth.txt", delimiter=",", ndmin=2)[0]
                reference = TrackingEngine(model, device="cpu", dtype="fp32")
                for name in IN_THE_NETWORK:
                    OneDNNBlock._attention = lambda self, q, k, v, a=CANDIDATES[name]: a(q, k, v)
                    fast = TrackingEngine(model, device="cpu", dtype="bf16")
                    steps[name].append(compare_with_fp32(reference, fast, frames, first_box).step_px)
        finally:
            OneDNNBlock._attention = shipped
    print(f"\n| the bf16 tracker with | one step vs fp32 over {sequences} demo sequences: median px | p95 | max |")
    print("|---|---|---|---|")
    for name, per_sequence in steps.items():
        step_px = np.concatenate(per_sequence)
        print(f"| {name} | {np.median(step_px):.3f} | {np.percentile(step_px, 95):.3f} | {step_px.max():.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="B-224",
                        help="a variant with random weights, or 'demo': the shipped demo model (trained weights)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--layer-scale", metavar="LOW,HIGH", help="draw LayerScale from U(LOW, HIGH)")
    parser.add_argument("--demo-sequences", type=int, default=0, metavar="N",
                        help="with --variant demo: also compare one tracker step with fp32 over the first N "
                             "sequences of the shipped demo test split (16 in all)")
    args = parser.parse_args()
    if args.demo_sequences and args.variant != "demo":
        parser.error("--demo-sequences needs --variant demo")
    choose_threads(args.threads)  # the count every engine of this run keeps
    tune_cpu_allocator()
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[0]
    model = load_model() if args.variant == "demo" else random_model(args.variant, args.layer_scale)
    inputs = model.get_sample_data(1)
    network = build_network(model, "cpu", "bf16", per_sequence=False)
    recorded = record_attention_inputs(network, inputs)
    q0 = recorded[0][0]
    print(f"torch {torch.__version__}, {args.threads} threads, {args.variant}, batch {q0.shape[0]}, "
          f"{q0.shape[2]} tokens, {q0.shape[1]} heads x {q0.shape[3]}, {len(recorded)} blocks")

    with torch.inference_mode():
        references = [F.scaled_dot_product_attention(q.double(), k.double(), v.double()) for q, k, v in recorded]
        errors = {}
        for name, attention in CANDIDATES.items():
            worst = mean = 0.0
            for (q, k, v), reference in zip(recorded, references):
                difference = (attention(q, k, v).double() - reference).abs()
                worst = max(worst, (difference.max() / reference.abs().max()).item())
                mean += difference.mean().item() / len(recorded)
            errors[name] = (worst, mean)

        def all_blocks(attention: Attention) -> Callable[[], None]:
            return lambda: [attention(q, k, v) for q, k, v in recorded]

        samples = time_interleaved({name: all_blocks(a) for name, a in CANDIDATES.items()},
                                   repeats=args.repeats, warmup=2)
    default = samples["fused kernel, bf16 q/k/v (the default before)"]
    flops = sum(4 * q.shape[0] * q.shape[1] * q.shape[2] ** 2 * q.shape[3] for q, _, _ in recorded)
    print(f"\n| attention, all {len(recorded)} blocks | ms (median) | spread | speed-up over the fused kernel "
          f"| TFLOPS | max error / max |out| | mean abs error |")
    print("|---|---|---|---|---|---|---|")
    for name, times in samples.items():
        median = statistics.median(times)
        spread = (max(times) - min(times)) / median
        print(f"| {name} | {median * 1e3:.2f} | {spread:.0%} | {median_ratio(default, times):.2f}x "
              f"| {flops / median / 1e12:.2f} | {errors[name][0]:.2e} | {errors[name][1]:.2e} |")

    with torch.inference_mode():
        reference = build_network(model, "cpu", "fp32", per_sequence=False)(*inputs)
        networks = {}
        for name in IN_THE_NETWORK:
            networks[name] = build_network(model, "cpu", "bf16", per_sequence=False)
            with_attention(networks[name], CANDIDATES[name])
        network_samples = time_interleaved({name: lambda n=n: n(*inputs) for name, n in networks.items()},
                                           repeats=args.repeats, warmup=2)
        print(f"\n| the bf16 network with | ms (median) | spread | speed-up over the fused kernel "
              f"| score logits vs fp32 (of the largest; tolerance {BF16_SCORE_TOLERANCE}) "
              f"| boxes vs fp32 (tolerance {BF16_BOX_TOLERANCE}) |")
        print("|---|---|---|---|---|---|")
        network_default = network_samples[IN_THE_NETWORK[0]]
        for name, times in network_samples.items():
            scores, boxes = networks[name](*inputs)[:2]
            score_error = ((scores - reference[0]).abs().max() / reference[0].abs().max()).item()
            box_error = (boxes - reference[1]).abs().max().item()
            median = statistics.median(times)
            spread = (max(times) - min(times)) / median
            print(f"| {name} | {median * 1e3:.1f} | {spread:.0%} | {median_ratio(network_default, times):.2f}x "
                  f"| {score_error:.4f} | {box_error:.2e} |")
    if args.demo_sequences:
        demo_split_agreement(model, args.demo_sequences)
    with open("/proc/loadavg") as f:
        print(f"\nload average before / after: {load_before} / {f.read().split()[0]}")


if __name__ == "__main__":
    main()
