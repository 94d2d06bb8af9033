"""Where one tracker step's time goes, per part of the network (linear layers at one frame's rows, attention, norms,
the head, copies) and around it (the crop, the post-processing), per precision, on the CPU.

Every part is timed in place (exclusive wall time: a part's own time, without the parts inside it) on the network
the engine builds for that precision, then medians over repeats. Each repeat also times one call of the same
network with the timers off, so the instrumentation's own cost is printed too. FLOPs are counted from the shapes
(2 per multiply-add; int8 products count as operations at the same rate) and compared with the rate of a
2048-cubed bf16 ``torch.matmul`` measured in the same run (``lorat benchmark``'s yardstick), or an fp32 one where
bf16 is not native (also when ``ONEDNN_MAX_CPU_ISA`` holds oneDNN below it).

  python benchmarks/profile_parts.py --variant B-224 --dtypes bf16,int8 --repeats 7
  ONEDNN_MAX_CPU_ISA=AVX2_VNNI ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
      python benchmarks/profile_parts.py --variant B-224 --dtypes int8,fp32 --repeats 5

The load average is printed before and after: on a shared machine a part's time is only as good as that.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from typing import Any, Callable

import torch
from timm.layers import LayerScale
from timm.models.vision_transformer import Attention, Block
from torch import nn

import lorat_plugin.engine.int8 as int8_module
import lorat_plugin.engine.tracking as tracking_module
from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.engine import TrackingEngine, build_network
from lorat_plugin.engine.int8 import Int8Linear
from lorat_plugin.engine.onednn import OneDNNBlock
from lorat_plugin.engine.precision import cpu_has_native_bf16
from lorat_plugin.model import build_model
from lorat_plugin.process import choose_threads
from lorat_plugin.speed import matmul_peak, network_flops


class PartTimer:
    """Exclusive wall time per part: a part's time minus the time of the parts timed inside it."""

    def __init__(self) -> None:
        self.enabled = False
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # [start, time of the parts inside]

    def start(self) -> None:
        if self.enabled:
            self._stack.append([time.perf_counter(), 0.0])

    def stop(self, part: str, flops: float = 0.0) -> None:
        if not self.enabled:
            return
        start, inside = self._stack.pop()
        elapsed = time.perf_counter() - start
        self.seconds[part] += elapsed - inside
        self.flops[part] += flops
        if self._stack:
            self._stack[-1][1] += elapsed

    def timed(self, function: Callable, part: Callable[..., str] | str,
              flops: Callable[..., float] | None = None) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.start()
            result = function(*args, **kwargs)
            self.stop(part(*args, **kwargs) if callable(part) else part, flops(*args, **kwargs) if flops else 0.0)
            return result
        return wrapper

    def hook(self, module: nn.Module, part: str | Callable[[nn.Module, tuple], str],
             flops: Callable[[nn.Module, tuple], float] | None = None) -> None:
        """Times ``module``'s forward as ``part`` (or ``part(module, inputs)``), with ``flops(module, inputs)``."""
        module.register_forward_pre_hook(lambda _module, _inputs: self.start())
        module.register_forward_hook(lambda module, inputs, _output: self.stop(
            part(module, inputs) if callable(part) else part, flops(module, inputs) if flops else 0.0))


def _attention_flops(q: torch.Tensor) -> float:
    batch, heads, tokens, head_dim = q.shape
    return 4.0 * batch * heads * tokens * tokens * head_dim  # q k^T and (softmax) v


def _out_features(packed: tuple | Int8Linear) -> int:
    return packed.out_features if isinstance(packed, Int8Linear) else packed[-1].numel()  # the bias: one per output


def instrument_network(module: nn.Module, timer: PartTimer) -> None:
    """Timers on every part of a LoRAT module as the engine built it (eager, oneDNN fused or int8 blocks)."""
    timer.hook(module, "network rest: embeddings added, tokens joined, casts")
    timer.hook(module.patch_embed, "patch embedding")
    timer.hook(module.norm, "final norm")
    timer.hook(module.head, "head (score and box MLPs)")
    for block in module.blocks:
        timer.hook(block, "blocks' rest: reshapes, copies, residual adds")
        timer.hook(block.norm1, "layer norms (blocks)")
        timer.hook(block.norm2, "layer norms (blocks)")
        if isinstance(block, OneDNNBlock):
            names = {id(block.qkv): "qkv", id(block.proj): "proj", id(block.fc1): "fc1", id(block.fc2): "fc2"}

            def linear_part(x: torch.Tensor, packed: tuple | Int8Linear, *args: Any, names: dict = names,
                            **kwargs: Any) -> str:
                return f"linear {names[id(packed)]} ({x.shape[0]} rows)"

            def linear_flops(x: torch.Tensor, packed: tuple | Int8Linear, *args: Any, **kwargs: Any) -> float:
                return 2.0 * x.shape[0] * x.shape[1] * _out_features(packed)

            block._linear = timer.timed(block._linear, linear_part, linear_flops)
            block._attention = timer.timed(block._attention, "attention (q k^T, softmax, v)",
                                           lambda q, k, v: _attention_flops(q))
        elif isinstance(block, Block):
            attn, mlp = block.attn, block.mlp
            for name, layer in (("qkv", attn.qkv), ("proj", attn.proj), ("fc1", mlp.fc1), ("fc2", mlp.fc2)):
                timer.hook(layer, lambda m, inputs, name=name: f"linear {name} ({inputs[0].numel() // m.in_features} rows)",
                           lambda m, inputs: 2.0 * inputs[0].numel() * m.out_features)
            if isinstance(attn, Attention):  # its own time: the attention core and its reshapes, not qkv / proj
                timer.hook(attn, "attention (q k^T, softmax, v)",
                           lambda _m, inputs: 4.0 * inputs[0].shape[0] * inputs[0].shape[1] ** 2 * inputs[0].shape[2])
            timer.hook(mlp.act, "GELU, LayerScale (eager blocks)")
            for ls in (block.ls1, block.ls2):
                if isinstance(ls, LayerScale):
                    timer.hook(ls, "GELU, LayerScale (eager blocks)")


def instrument_functions(timer: PartTimer) -> None:
    """Timers on int8's per-call activation quantisation, the engine's crop (crop_image + normalize_images) and
    its post-processing (select_boxes)."""
    int8_module.quantize_dynamic = timer.timed(int8_module.quantize_dynamic,
                                               "int8 activation quantisation (aminmax, quantize)")
    tracking_module.crop_image = timer.timed(tracking_module.crop_image, "crop (per frame, on the device)")
    tracking_module.normalize_images = timer.timed(tracking_module.normalize_images, "crop (per frame, on the device)")
    tracking_module.select_boxes = timer.timed(tracking_module.select_boxes, "post-processing (window, argmax)")


def profile(variant: str, dtype: str, repeats: int, timer: PartTimer) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_model(variant, merge=True).eval()
    network = build_network(model, "cpu", dtype, per_sequence=False)
    instrument_network(network.module, timer)
    engine = TrackingEngine(network)
    frames, truth = moving_box_video(repeats + 3, (640, 480))
    state = engine.initialize([frames[0]], truth[:1])
    inputs = model.get_sample_data(1, "cpu")
    parts: dict[str, list[float]] = defaultdict(list)
    flops: dict[str, float] = {}
    plain, step = [], []
    for index, frame in enumerate(frames[1:]):
        timer.enabled = False
        start = time.perf_counter()
        network(*inputs)
        plain.append(time.perf_counter() - start)
        timer.enabled = True
        timer.seconds.clear()
        timer.flops.clear()
        timer.start()
        engine.track(state, [frame])
        timer.stop("tracker rest: templates, host copy, box mapping")
        timer.enabled = False
        if index < 2:  # warm-up: kernel choices, packing, first allocations
            continue
        step.append(sum(timer.seconds.values()))
        for part, seconds in timer.seconds.items():
            parts[part].append(seconds)
        flops = dict(timer.flops)
    return {"dtype": dtype, "description": network.description, "parts": parts, "flops": flops,
            "plain_ms": 1e3 * statistics.median(plain[2:]), "step_ms": 1e3 * statistics.median(step),
            "network_flops": network_flops(model)}


def report(result: dict[str, Any], peak_tflops: float, peak_dtype: str) -> list[str]:
    medians = {part: 1e3 * statistics.median(values) for part, values in result["parts"].items()}
    tracker_parts = [p for p in medians if p.startswith(("crop", "post-processing", "tracker rest"))]
    network_ms = sum(ms for part, ms in medians.items() if part not in tracker_parts)
    lines = [f"### {result['dtype']}: {result['description']}", "",
             f"tracker step {result['step_ms']:.1f} ms (parts' medians add to {sum(medians.values()):.1f}); network "
             f"{network_ms:.1f} ms with timers, {result['plain_ms']:.1f} ms without (same run); "
             f"{result['network_flops'] / 1e9:.1f} GFLOP per frame: {result['network_flops'] / result['plain_ms'] / 1e9:.2f}"
             f" TFLOPS, {100 * result['network_flops'] / result['plain_ms'] / 1e9 / peak_tflops:.0f} % of the {peak_dtype} "
             f"matmul rate", "",
             f"| part | ms per frame | share of the step | GFLOP | TFLOPS | of the {peak_dtype} matmul rate |",
             "|---|---|---|---|---|---|"]
    total = sum(medians.values())
    for part, ms in sorted(medians.items(), key=lambda item: -item[1]):
        gflop = result["flops"].get(part, 0.0) / 1e9
        rate = f"{gflop / ms:.2f} | {100 * gflop / ms / peak_tflops:.0f} %" if gflop else " | "
        lines.append(f"| {part} | {ms:.2f} | {100 * ms / total:.1f} % | {gflop:.2f} | {rate} |".replace("|  |", "| |"))
    linear_ms = sum(ms for part, ms in medians.items() if part.startswith("linear"))
    linear_gflop = sum(f for part, f in result["flops"].items() if part.startswith("linear")) / 1e9
    if linear_ms:
        lines += ["", f"linears together: {linear_ms:.1f} ms, {linear_gflop / linear_ms:.2f} TFLOPS "
                      f"({100 * linear_gflop / linear_ms / peak_tflops:.0f} % of the matmul rate); the network with "
                      f"every other part free would run at {100 * result['network_flops'] / 1e9 / linear_ms / peak_tflops:.0f} %"
                      " of it"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="B-224")
    parser.add_argument("--dtypes", default="bf16,int8", help="comma-separated precisions (default bf16,int8)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: choose_threads's: torch's count, lowered to free CPUs)")
    args = parser.parse_args()
    choose_threads(args.threads)  # before the yardstick: the engines built below keep this count
    timer = PartTimer()
    instrument_functions(timer)
    print(f"load average before: {open('/proc/loadavg').read().strip()}; torch threads {torch.get_num_threads()}")
    peak_dtype = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    peak, what = matmul_peak("cpu", peak_dtype)
    results = [profile(args.variant, dtype.strip(), args.repeats, timer) for dtype in args.dtypes.split(",")]
    peak_after, _ = matmul_peak("cpu", peak_dtype)
    print(f"{what}: {peak:.2f} TFLOPS before, {peak_after:.2f} after (the rate below uses the larger)")
    yardstick = "bf16" if peak_dtype == torch.bfloat16 else "fp32"
    for result in results:
        print("\n" + "\n".join(report(result, max(peak, peak_after), yardstick)))
    print(f"\nload average after: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
