"""One prepared check of LoRAT's GPU paths: speed, CUDA graphs, fp16 agreement, fp16 training, full fine-tuning and
torch.compile under DDP, on random weights and generated frames (nothing is downloaded).

For any CUDA machine with PyTorch >= 2.1 and this project installed (``pip install --no-deps -e .``: torch, timm,
numpy, safetensors, PyYAML and Pillow are all it needs). Every check runs in one process, one after another; the
whole run is meant to take under 8 minutes on one H100/H200-class GPU, and a check that would start after
``--budget`` seconds is skipped (and says so) rather than overrunning. Writes ``gpu_check.json`` and
``gpu_check.md`` (the tables) to ``--out``; exits 1 naming every check that failed, 2 when there is no CUDA device.

  python benchmarks/gpu_check.py --out gpu-check
  python benchmarks/gpu_check.py --only fps,graphs --out gpu-check
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

PAPER_FPS = {"B-224": 209, "L-224": 119}  # the paper's tracking speed at batch 1
FP16_TOLERANCE = {"score": 5e-3, "box": 5e-4}  # docs/speed.md's stored-fp16 tolerances (measured on B-224)
CHECKS: dict[str, tuple[Callable[["Run"], dict], str]] = {}


class CheckFailed(AssertionError):
    """A check ran and its result is wrong (the message says what)."""


def check(name: str, description: str) -> Callable:
    def register(function: Callable[["Run"], dict]) -> Callable[["Run"], dict]:
        CHECKS[name] = (function, description)
        return function
    return register


@dataclass
class Run:
    """What every check needs: the device, the sizes (``tiny``: a CPU dry run of the plumbing), the clock."""

    device: torch.device
    tiny: bool
    budget_s: float
    started: float = field(default_factory=time.perf_counter)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def config(self, variant: str, **changes: Any):
        from lorat_plugin.model import get_config

        config = get_config(variant).replace(**changes)
        if self.tiny:  # same FFN kind and tuning, a width-32 two-block network on 28/56 px crops
            config = config.replace(embed_dim=32, depth=2, num_heads=2, template_size=28, search_size=56,
                                    lora_rank=4, lora_alpha=8.0)
        return config

    def model(self, variant: str, **changes: Any) -> torch.nn.Module:
        """Random weights (seeded) with LayerScale drawn from U(0.1, 1): trained DINOv2 blocks contribute at that
        order, while the initial 1e-5 would make every block vanish from the residual stream."""
        from lorat_plugin.model import build_model

        torch.manual_seed(0)
        with self.device:  # parameters are created (and randomly initialised) on the device: seconds for ViT-g
            model = build_model(self.config(variant, **changes))
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith(("ls1.gamma", "ls2.gamma")):
                    parameter.uniform_(0.1, 1.0)
        return model

    def over_budget(self) -> bool:
        return time.perf_counter() - self.started > self.budget_s

    def batch(self, size: int) -> int:
        return min(size, 4) if self.tiny else size

    def memory(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 1e9 if self.cuda else None

    def reset_memory(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)


def network_difference(reference: Callable, candidate: Callable, inputs: tuple) -> dict[str, float]:
    """Largest score-logit difference relative to the largest logit, and largest box difference (crop units).
    ``reference`` is an fp32 backend, which runs without TF32 on CUDA (``engine.precision.full_fp32``)."""
    score_ref, box_ref = (t.float() for t in reference(*inputs))
    score, box = (t.float() for t in candidate(*inputs))
    return {"score_rel": float((score - score_ref).abs().max() / score_ref.abs().max().clamp_min(1e-12)),
            "box_abs": float((box - box_ref).abs().max())}


# ---- inference speed -----------------------------------------------------------------------------------------------

def _speed(run: Run, compiled: bool) -> dict:
    from lorat_plugin.engine import build_network
    from lorat_plugin.engine.cuda_graphs import CUDAGraphNetwork
    from lorat_plugin.speed import measure_speed

    rows, problems = [], []
    for variant in ("B-224", "L-224"):
        if run.over_budget():
            rows.append({"variant": variant, "backend": "skipped: over the --budget (run this check alone)"})
            continue
        model = run.model(variant).eval()
        eager = build_network(model, run.device, "fp16")
        if compiled:
            inner = build_network(model, run.device, "fp16", compile=True)
            backends = {"compiled": inner}
            if run.cuda:
                backends["compiled + CUDA graphs"] = CUDAGraphNetwork(inner)
        else:
            backends = {"eager": eager}
            if run.cuda:
                backends["CUDA graphs"] = build_network(model, run.device, "fp16", cuda_graphs=True)
        started = time.perf_counter()
        batches = (1, run.batch(32))
        result = measure_speed(backends, model, device=run.device, variant=variant, weights="random",
                               batch_sizes=batches, repeats=3 if run.tiny else 20, warmup=2, compare_timm=False,
                               frame_size=(160, 120) if run.tiny else (640, 480))
        seconds = time.perf_counter() - started
        for row in result.rows:
            rows.append({"variant": variant, "backend": row.backend, "batch": row.batch,
                         "network fps": round(1e3 / row.model_ms, 1),
                         "tracker fps": round(1e3 / row.tracker_ms, 1) if row.tracker_ms else None,
                         "paper fps (batch 1)": PAPER_FPS[variant] if row.batch == 1 else None})
        # A replayed graph or a compiled function must follow its inputs (a stale graph returns old outputs).
        for name, backend in backends.items():
            if name == "eager":
                continue
            for batch in batches:
                for seed in (1, 2):
                    difference = network_difference(eager, backend, model.get_sample_data(batch, run.device,
                                                                                     seed=seed))
                    if difference["score_rel"] > 1e-2 or difference["box_abs"] > 1e-2:
                        problems.append(f"{variant} {name} batch {batch} input {seed}: {difference} against eager")
        rows[-1]["seconds (incl. compile)"] = round(seconds, 1)
        del model, eager, backends
    if problems:
        raise CheckFailed("; ".join(problems))
    return {"rows": rows}


@check("fps", "B-224 and L-224 frames/s at batch 1 and 32, fp16, eager and CUDA graphs, beside the paper's 209 and "
              "119 (network alone and the whole tracker step on decoded 640x480 frames); outputs follow the inputs")
def fps(run: Run) -> dict:
    return _speed(run, compiled=False)


@check("graphs", "the CUDA-graph engine against the plain fp16 engine on generated sequences, step by step (equal "
                 "boxes), at batch 3 (padded to 4) and 1, and the graph network called outside inference mode")
def graphs(run: Run) -> dict:
    from lorat_plugin.engine import TrackingEngine
    from lorat_plugin.engine import build_network
    from lorat_plugin.data.synthetic import moving_box_videos

    model = run.model("B-224").eval()
    plain = build_network(model, run.device, "fp16")
    graph = build_network(model, run.device, "fp16", cuda_graphs=run.cuda)  # a dry run compares plain with plain
    rows = []
    for count in (3, 1):
        sequences, boxes = moving_box_videos(count, 6 if run.tiny else 40, (160, 120) if run.tiny else (640, 480))
        engines = TrackingEngine(plain), TrackingEngine(graph)
        states = [engine.initialize([s[0] for s in sequences], boxes) for engine in engines]
        worst = 0.0
        for index in range(1, len(sequences[0])):
            frames = [s[index] for s in sequences]
            (a, _), (b, _) = (engine.track(state, frames) for engine, state in zip(engines, states))
            worst = max(worst, float(np.abs(a - b).max()))
        rows.append({"sequences": count, "frames": len(sequences[0]), "largest box difference px": worst})
        if worst > 1e-3:
            raise CheckFailed(f"CUDA-graph engine boxes differ from the plain engine's by {worst:.4g} px "
                              f"({count} sequences)")
    inputs = model.get_sample_data(3, run.device, seed=5)  # the graph the engine captured for 3 (bucket 4)
    difference = network_difference(plain, graph, inputs)  # outside inference mode, after the engine's calls
    rows.append({"sequences": "network call outside inference mode", **difference})
    if difference["box_abs"] > 1e-3:
        raise CheckFailed(f"graph network outside inference mode: {difference}")
    return {"rows": rows}


@check("batch", "batch invariance on the device: a sequence's B-224 network outputs alone and inside a batch of 8 "
                "(the other rows with another range), fp16 and fp32, batched (the GPU default) and one call per "
                "sequence (the CPU default); reported, not required (docs/speed.md, 'Batch invariance')")
def batch(run: Run) -> dict:
    from lorat_plugin.engine import build_network

    model = run.model("B-224").eval()
    z, x, mask = model.get_sample_data(run.batch(8), run.device, seed=4)
    x[1:] *= 3
    rows = []
    for precision in ("fp16", "fp32"):
        for per_sequence in (False, True):
            network = build_network(model, run.device, precision, per_sequence=per_sequence)
            together = network(z, x, mask)
            alone = network(z[:1], x[:1], mask[:1])
            rows.append({"precision": precision, "calls": "one per sequence" if per_sequence else "one per batch",
                         "score logits max diff": float((together.score_map[:1] - alone.score_map).abs().max()),
                         "boxes max diff": float((together.boxes[:1] - alone.boxes).abs().max()),
                         "bit-identical": bool(torch.equal(together.score_map[:1], alone.score_map)
                                               and torch.equal(together.boxes[:1], alone.boxes))})
            del network
        run.reset_memory()
    return {"rows": rows}


@check("fp16", "fp16 against fp32 (TF32 off) network agreement for B-224, L-224 and g-378: stored fp16 weights "
               "(fp16 residual stream and LayerScale) and the reference's autocast, plus one tracker step in px")
def fp16(run: Run) -> dict:
    from lorat_plugin.engine import TrackingEngine
    from lorat_plugin.engine import build_network
    from lorat_plugin.data.synthetic import moving_box_videos
    from lorat_plugin.speed import compare_with_fp32

    rows, problems = [], []
    sequences, boxes = moving_box_videos(1, 6 if run.tiny else 20, (160, 120) if run.tiny else (640, 480))
    for variant in ("B-224", "L-224", "g-378"):
        model = run.model(variant).eval()
        reference = build_network(model, run.device, "fp32")
        inputs = model.get_sample_data(run.batch(8), run.device, seed=3)
        for name, kwargs in (("stored fp16", {}), ("fp16 autocast", {"autocast": True})):
            candidate = build_network(model, run.device, "fp16", **kwargs)
            difference = network_difference(reference, candidate, inputs)
            step = compare_with_fp32(TrackingEngine(reference), TrackingEngine(candidate), sequences[0], boxes[0])
            rows.append({"variant": variant, "path": name, "score logits (rel.)": difference["score_rel"],
                         "boxes (crop units)": difference["box_abs"], "tracker one-step px": float(step.step_px.max())})
            if name == "stored fp16" and (difference["score_rel"] > FP16_TOLERANCE["score"]
                                          or difference["box_abs"] > FP16_TOLERANCE["box"]):
                problems.append(f"{variant} stored fp16 beyond docs/speed.md's tolerance {FP16_TOLERANCE}: "
                                f"{difference}")
            del candidate
        del model, reference
        run.reset_memory()
    if problems:
        raise CheckFailed("; ".join(problems))
    return {"rows": rows}


# ---- training --------------------------------------------------------------------------------------------------

def train_steps(run: Run, variant: str, batch_size: int, steps: int, tuning: str = "lora") -> dict:
    """``steps`` optimiser steps of the trainer's own step (``lorat_plugin.train.step``: fp16 autocast and GradScaler
    on CUDA, fp32 in a CPU dry run) on a fixed generated batch; the first three are warm-up and untimed."""
    from lorat_plugin.train.step import build_train_step, synthetic_batch

    run.reset_memory()
    with run.device:  # parameters initialised on the device: seconds for ViT-g
        step = build_train_step(run.config(variant), tuning=tuning, dtype="fp16", device=run.device)
    before = [p.detach().clone() for p in step.params]
    batch = synthetic_batch(step.model.config, batch_size)
    reports, times = [], []
    for i in range(steps):
        if run.cuda:
            torch.cuda.synchronize(run.device)
        start = time.perf_counter()
        reports.append(step.run(batch))  # reads the loss back: the device is synchronised
        if i >= 3 or steps <= 3:
            times.append(time.perf_counter() - start)
    losses = [r.loss for r in reports]
    skipped = sum(r.skipped for r in reports)
    changed = any(not torch.equal(a, p.detach()) for a, p in zip(before, step.params))
    scales = [r.loss_scale for r in reports]
    result = {"variant": variant, "tuning": tuning, "batch": batch_size, "steps": steps,
              "trainable M": round(sum(p.numel() for p in step.params) / 1e6, 2), "first loss": losses[0],
              "last loss": losses[-1], "loss scale first -> last": f"{scales[0]} -> {scales[-1]}",
              "skipped steps": skipped, "step s (median)": statistics.median(times),
              "pairs/s": batch_size / statistics.median(times), "peak memory GB": run.memory()}
    if not all(math.isfinite(v) for v in losses):
        raise CheckFailed(f"{variant} {tuning}: non-finite loss {losses}")
    if skipped > steps // 2 or not changed:
        raise CheckFailed(f"{variant} {tuning}: {skipped} of {steps} steps skipped by the GradScaler, weights "
                          f"changed: {changed}")
    return result


@check("train", "20 fp16 training steps (LoRA, GradScaler) of B-224 and g-224 at batch 16: finite loss, loss scale "
                "and skipped steps, pairs/s, peak memory (the paper: ViT-g at batch 16 in 25.8 GB)")
def train(run: Run) -> dict:
    steps = 3 if run.tiny else 20
    return {"rows": [train_steps(run, variant, run.batch(16), steps) for variant in ("B-224", "g-224")]}


@check("full", "B-224 model.tuning=full beside LoRA, fp16 at batch 16: step-time and peak-memory ratios (the "
               "paper: L-224 trains in 10.8 GPU-hours with LoRA against 35.0 fully fine-tuned, 3.2x)")
def full(run: Run) -> dict:
    steps = 3 if run.tiny else 12
    lora, whole = (train_steps(run, "B-224", run.batch(16), steps, tuning) for tuning in ("lora", "full"))
    ratios = {"variant": "B-224", "full / LoRA step time": whole["step s (median)"] / lora["step s (median)"],
              "full / LoRA peak memory": (whole["peak memory GB"] / lora["peak memory GB"]) if run.cuda else None}
    return {"rows": [lora, whole, ratios]}


# ---- compiled ------------------------------------------------------------------------------------------------------

@check("ddp-compile", "torch.compile of a DistributedDataParallel(static_graph=True) model (the trainer's set-up) "
                      "in a one-process world: it trains, and its losses match the plain model's")
def ddp_compile(run: Run) -> dict:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from lorat_plugin.train.step import build_train_step, synthetic_batch

    rows, problems = [], []
    with tempfile.TemporaryDirectory() as folder:
        dist.init_process_group("nccl" if run.cuda else "gloo", init_method=f"file://{folder}/store", rank=0,
                                world_size=1)
        try:
            for static_graph in (True, False):  # the trainer's choice; the fallback is measured if it breaks
                if not static_graph and not problems:
                    break
                losses: dict[str, list[float]] = {}
                try:
                    for name in ("plain", "DDP + compile"):
                        with run.device:
                            step = build_train_step(run.config("B-224"), dtype="fp16", device=run.device)
                        if name != "plain":  # the trainer's wrapping (lorat_plugin.train.trainer)
                            step.network = DistributedDataParallel(
                                step.model, device_ids=[run.device.index or 0] if run.cuda else None,
                                static_graph=static_graph, gradient_as_bucket_view=True, bucket_cap_mb=100)
                            if not run.tiny:  # a dry run checks the wiring only
                                step.network = torch.compile(step.network)
                        batch = synthetic_batch(step.model.config, run.batch(8))
                        started, losses[name] = time.perf_counter(), []
                        for _ in range(4):
                            losses[name].append(step.run(batch).loss)
                        rows.append({"static_graph": static_graph, "model": name, "losses": losses[name],
                                     "seconds (incl. compile)": round(time.perf_counter() - started, 1)})
                    gap = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(*losses.values()))
                    if not math.isfinite(gap) or gap > 2e-2:
                        raise CheckFailed(f"losses {losses['DDP + compile']} against plain {losses['plain']}")
                except Exception as error:
                    message = f"{type(error).__name__}: {error}".splitlines()[0]
                    rows.append({"static_graph": static_graph, "model": "DDP + compile", "error": message})
                    problems.append(f"static_graph={static_graph}: {message}")
        finally:
            dist.destroy_process_group()
    if problems:
        raise CheckFailed("; ".join(problems))
    return {"rows": rows}


@check("fps-compiled", "B-224 and L-224 frames/s at batch 1 and 32, fp16, torch.compile alone and under CUDA graphs "
                       "(several minutes of compiling; skipped in a CPU dry run)")
def fps_compiled(run: Run) -> dict:
    if run.tiny:
        return {"skipped": "compiling takes minutes on a CPU"}
    return _speed(run, compiled=True)


# ---- the run -------------------------------------------------------------------------------------------------------

def markdown(name: str, result: dict) -> str:
    lines = [f"### {name}: {result['status']}", ""]
    rows = result.get("rows") or []
    if rows:
        columns = list(dict.fromkeys(key for row in rows for key in row))

        def cell(value: Any) -> str:
            if isinstance(value, float):
                return f"{value:.4g}"
            return "" if value is None else str(value)

        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2 ** 30:.0f} GiB), CUDA {torch.version.cuda}"
    return "CPU (dry run with tiny models)"


def main(argv: list[str] | None = None) -> int:
    epilog = "checks, in the order they run:\n" + "\n".join(f"  {name:13} {text}" for name, (_, text)
                                                             in CHECKS.items())
    parser = argparse.ArgumentParser(description=__doc__, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", metavar="DIR", default="gpu-check", help="where gpu_check.json and .md go")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated checks to run (default: all)")
    parser.add_argument("--budget", type=float, default=330.0, metavar="S",
                        help="skip what would start after S seconds (default 330: the run ends within 8 minutes)")
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # "cpu" with --tiny: a dry run
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = list(CHECKS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, CUDA build {torch.version.cuda}): "
              "nothing checked", file=sys.stderr)
        return 2
    if device.type != "cuda" and not args.tiny:
        parser.error("a device other than CUDA is only for the --tiny dry run")
    if device.type == "cuda":  # an explicit index: set_device, DDP's device_ids and the captures all use it
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.cuda.set_device(device)

    run = Run(device=device, tiny=args.tiny, budget_s=args.budget)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"device": describe_device(device), "torch": torch.__version__, "checks": {}}
    for name in names:
        elapsed = time.perf_counter() - run.started
        if elapsed > run.budget_s:
            result = {"status": f"skipped: {elapsed:.0f} s spent, over the --budget of {run.budget_s:.0f} s"}
        else:
            started = time.perf_counter()
            try:
                result = {"status": "ok", **CHECKS[name][0](run)}
                if "skipped" in result:
                    result["status"] = f"skipped: {result.pop('skipped')}"
            except Exception as error:  # every check runs; the failures are listed at the end
                result = {"status": f"FAILED: {type(error).__name__}: {error}".splitlines()[0]}
            result["seconds"] = round(time.perf_counter() - started, 1)
            run.reset_memory()
        report["checks"][name] = result
        print(markdown(name, result), flush=True)
    report["seconds"] = round(time.perf_counter() - run.started, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(f"gpu_check on {report['device']}, torch {report['torch']}, "
                                      f"{report['seconds']} s\n\n"
                                      + "\n".join(markdown(n, r) for n, r in report["checks"].items()))
    failed = [name for name, result in report["checks"].items() if result["status"].startswith("FAILED")]
    if failed:
        print(f"gpu_check: failed: {', '.join(failed)} (details in {out / 'gpu_check.md'})", file=sys.stderr)
        return 1
    print(f"gpu_check: every check that ran passed ({out / 'gpu_check.md'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
