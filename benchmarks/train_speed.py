"""Training speed of one LoRAT variant: optimiser-step time, samples/s and peak memory, on CPU or GPU.

The step is the trainer's own (``lorat_plugin.train.step.build_train_step``: autocast forward, fp32 loss, GradScaler for
fp16, clip 1.0, AdamW with the recipe's parameter groups) on a fixed random batch, with random weights (speed does
not depend on them). ``--data-workers N`` also measures the input pipeline (decode, crop, jitter, augment, labels)
on generated 640x480 JPEG sequences with N DataLoader workers, to show whether it keeps up with the step.

  python benchmarks/train_speed.py --variant B-224 --batch-size 32 --dtype bf16 --steps 20
  python benchmarks/train_speed.py --variant g-378 --batch-size 16 --dtype bf16 --steps 10 --device cuda
  python benchmarks/train_speed.py --variant S-224 --batch-size 8 --dtype fp32 --steps 5 --data-workers 2
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def measure_steps(args: argparse.Namespace, device: torch.device) -> dict:
    from lorat_plugin.model import count_parameters
    from lorat_plugin.train.step import build_train_step, synthetic_batch

    step = build_train_step(args.variant, tuning=args.tuning, dtype=args.dtype, device=device, compile=args.compile,
                            attention=args.attention)
    model = step.model
    batch = synthetic_batch(model.config, args.batch_size // args.accumulation)
    if device.type == "cuda":
        batch = {k: v.pin_memory() for k, v in batch.items()}
        torch.cuda.reset_peak_memory_stats(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    for i in range(args.warmup + args.steps):
        sync()
        start = time.perf_counter()
        for _ in range(args.accumulation):
            loss, _ = step.backward(batch, args.accumulation)
        step.update()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss.item()}")
    counts = count_parameters(model)
    result = {
        "variant": args.variant, "tuning": args.tuning, "batch_size": args.batch_size,
        "accumulation": args.accumulation,
        "dtype": {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[step.amp],
        "compile": args.compile,
        "attention": args.attention,
        "trainable_params_M": round(counts["trainable"] / 1e6, 2), "total_params_M": round(counts["total"] / 1e6, 1),
        "step_time_s": float(np.median(times)), "step_time_min_s": float(np.min(times)),
        "samples_per_s": args.batch_size / float(np.median(times)), "steps_timed": len(times),
    }
    if device.type == "cuda":
        result["peak_memory_GiB"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        result["peak_reserved_GiB"] = torch.cuda.max_memory_reserved(device) / 2 ** 30
    else:  # the whole process's peak resident set (Linux reports KiB)
        result["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return result


def measure_pipeline(args: argparse.Namespace) -> dict:
    """Pairs per second through the real input pipeline on generated JPEG sequences."""
    from lorat_plugin.data.datasets.write import SequenceData, write_dataset
    from lorat_plugin.model import get_config
    from lorat_plugin.train.config import DataSection, DatasetEntry
    from lorat_plugin.train.loader import PairDataset, StepBatchSampler, build_loader
    from lorat_plugin.train.pairs import PairRecipe
    from lorat_plugin.train.source import build_source

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        sequences = []
        for s in range(8):
            base = rng.integers(0, 256, (60, 80, 3), np.uint8).repeat(8, 0).repeat(8, 1)
            frames, boxes = [], []
            for t in range(30):
                frame = np.roll(base, t * 3, axis=1).copy()
                x, y = 200 + 4 * t, 150 + 2 * t
                frame[y:y + 120, x:x + 90] = (230, 40, 40)
                frames.append(frame)
                boxes.append((x, y, 90, 120))
            sequences.append(SequenceData(f"GOT-10k_Train_{s + 1:06d}", frames, np.array(boxes, float)))
        write_dataset(folder, "got10k", sequences, split="train")
        data = DataSection(datasets=[DatasetEntry("got10k", folder, "train")])
        source = build_source(data.datasets)
        batches = args.pipeline_batches
        dataset = PairDataset(source, PairRecipe.create(get_config(args.variant), data),
                              samples_per_epoch=args.batch_size * batches, seed=0, max_gap=100)
        sampler = StepBatchSampler(global_batch=args.batch_size, steps_per_epoch=batches)
        loader = build_loader(dataset, sampler, num_workers=args.data_workers, pin_memory=False)
        iterator = iter(loader)
        next(iterator)  # worker start-up
        start = time.perf_counter()
        count = sum(1 for _ in iterator)
        elapsed = time.perf_counter() - start
    return {"pipeline_workers": args.data_workers, "pipeline_pairs_per_s": count * args.batch_size / elapsed,
            "pipeline_frame_size": "640x480 JPEG"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="B-224", help="S-224, B-224, B-378, L-224, L-378, g-224, g-378")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per optimiser step")
    parser.add_argument("--accumulation", type=int, default=1, help="micro-batches per step (batch split evenly)")
    parser.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--tuning", default="lora", choices=["lora", "full"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup untimed ones)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (as the reference does)")
    parser.add_argument("--attention", default="default", choices=["default", "math"],
                        help="attention kernel (train.attention)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--data-workers", type=int, default=None, help="also measure the input pipeline")
    parser.add_argument("--pipeline-batches", type=int, default=10)
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.batch_size % args.accumulation:
        parser.error("--batch-size must be divisible by --accumulation")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    result = {"device": device_name(device), "torch": torch.__version__, **measure_steps(args, device)}
    if args.data_workers is not None:
        result.update(measure_pipeline(args))
    for key, value in result.items():
        print(f"{key:22} {value:.4g}" if isinstance(value, float) else f"{key:22} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
