"""Arguments shared by every verb that needs a model: the same flags everywhere, resolved by one policy
(:class:`lorat_plugin.model.sources.ModelSpec`)."""
from __future__ import annotations

import argparse
from typing import Any

from ..model.sources import ENV


def frame_size(text: str) -> tuple[int, int]:
    """The argparse type of every ``WxH`` option: two positive integers, e.g. ``640x480``."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        width = height = 0
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"expected WxH, a positive width and height, e.g. 640x480, got {text!r}")
    return width, height


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (default: the shipped demo model)")
    group.add_argument("--variant", help=f"S-224, B-224, B-378, L-224, L-378, g-224, g-378 or demo (default: the one "
                                         f"checkpoint in the weights folder) [env {ENV['variant']}]")
    group.add_argument("--backbone-weights", metavar="FILE",
                       help=f"DINOv2 file, e.g. dinov2_vitb14_pretrain.pth [env {ENV['backbone_weights']}]")
    group.add_argument("--checkpoint", metavar="FILE",
                       help="LoRAT checkpoint: released base.bin/large-378.bin/... or one written by `lorat train` "
                            f"[env {ENV['checkpoint']}]")
    group.add_argument("--weights-dir", metavar="DIR",
                       help="folder with the DINOv2 files and released checkpoints under their usual names "
                            f"[env {ENV['weights_dir']}]")
    group.add_argument("--device", default=None,
                       help=f"cpu, cuda, cuda:1, mps (default: the best available) [env {ENV['device']}]")
    group.add_argument("--dtype", default=None,
                       help="inference precision, a row of the backend table: fp32, bf16, fp16, int8 (default: the "
                            "precision policy for the device; int8: CPU, opt-in; see docs/speed.md) "
                            f"[env {ENV['dtype']}]")


def model_from_args(args: argparse.Namespace, *, merge: bool = True) -> Any:
    from ..model.sources import ModelSpec

    return ModelSpec.from_args(args).load(merge=merge)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """How the network runs (docs/speed.md); the defaults are the fastest tested path for the device."""
    group = parser.add_argument_group("network backend (default: stored-precision weights, eager PyTorch)")
    group.add_argument("--onnx", metavar="FILE", help="run an exported network (`lorat export`) with ONNX Runtime "
                                                      "on the CPU instead of a PyTorch model")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the network (about a minute per batch size on a small CPU)")
    group.add_argument("--cuda-graphs", action="store_true", help="capture and replay CUDA graphs (CUDA only)")
    group.add_argument("--autocast", action="store_true",
                       help="bf16/fp16 as autocast around fp32 weights (the reference's AMP; slower)")
    group.add_argument("--threads", type=positive_int, metavar="N",
                       help="torch intra-op threads in this process, set once before the model loads (default: "
                            "LORAT_THREADS or OMP_NUM_THREADS where set, torchrun sets 1 per process; else torch's "
                            "count lowered to the CPUs other processes leave free). Boxes are the same at any count "
                            "on the CPUs tested (docs/speed.md, \"Shared machines and the first pass\")")


def positive_int(text: str) -> int:
    """The argparse type of counts that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


BACKEND_FLAGS = ("compile", "cuda_graphs", "autocast")


def backend_flags(args: argparse.Namespace) -> dict[str, bool]:
    """The backend options the flags of :func:`add_backend_arguments` ask for (only those set)."""
    return {name: True for name in BACKEND_FLAGS if getattr(args, name, False)}


def set_threads(args: argparse.Namespace) -> None:
    """Choose the thread count once, before any network runs: ``--threads`` as given, else
    :func:`~lorat_plugin.process.choose_threads`'s choice (boxes are the same at any count)."""
    from ..process import choose_threads

    choose_threads(getattr(args, "threads", None))


def engine_from_args(args: argparse.Namespace, device: str | None = None) -> tuple[Any, Any]:
    """(TrackingEngine, ModelSpec or ``None`` for ``--onnx``): the model arguments' model, or an ONNX Runtime session,
    in the backend the backend arguments ask for, on ``device`` (default: the spec's device)."""
    from ..engine import TrackingEngine
    from ..model.sources import ModelSpec

    set_threads(args)
    onnx = getattr(args, "onnx", None)
    if onnx:
        if args.variant or args.backbone_weights or args.checkpoint or args.weights_dir:
            raise ValueError("--onnx runs the exported file: give no --variant/--checkpoint/weights with it")
        refused = [flag for flag, value in (("--dtype", args.dtype), ("--device", args.device),
                                            *((f"--{name.replace('_', '-')}", True) for name in backend_flags(args)))
                   if value]
        if refused:
            raise ValueError(f"--onnx runs the exported file on the CPU at the precision it was exported with: "
                             f"{', '.join(refused)} cannot apply to it (export another file with `lorat export "
                             "--dtype ...`, or drop --onnx)")
        from ..engine.onnx import OnnxNetwork
        from ..engine.per_sequence import PerSequenceNetwork

        network = OnnxNetwork(onnx)
        # one call per sequence, as the PyTorch CPU default (an int8 file's activation scale spans its batch)
        return TrackingEngine(network if network.fixed_batch else PerSequenceNetwork(network)), None
    spec = ModelSpec.from_args(args)
    return TrackingEngine(spec.load(), device=device or spec.device, dtype=spec.dtype, **backend_flags(args)), spec
