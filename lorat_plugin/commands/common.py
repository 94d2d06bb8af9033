"""Arguments shared by every verb that needs a model: the same flags everywhere."""
from __future__ import annotations

import argparse

import torch


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (default: the shipped demo model)")
    group.add_argument("--variant", help="S-224, B-224, B-378, L-224, L-378, g-224, g-378 or demo [env LORAT_VARIANT]")
    group.add_argument("--backbone-weights", metavar="FILE",
                       help="DINOv2 file, e.g. dinov2_vitb14_pretrain.pth [env LORAT_BACKBONE_WEIGHTS]")
    group.add_argument("--checkpoint", metavar="FILE",
                       help="LoRAT checkpoint: released base.bin/large-378.bin/... or one written by `lorat train` "
                            "[env LORAT_CHECKPOINT]")
    group.add_argument("--weights-dir", metavar="DIR",
                       help="folder with the DINOv2 files and released checkpoints under their usual names "
                            "[env LORAT_WEIGHTS_DIR]")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    group.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"],
                       help="inference precision (default: fp16 on CUDA, bf16 on CPUs with AMX/AVX512-BF16, "
                            "else fp32; see docs/speed.md)")


def model_from_args(args: argparse.Namespace, *, merge: bool = True):
    from ..model.sources import load_model

    return load_model(args.variant, backbone_weights=args.backbone_weights, checkpoint=args.checkpoint,
                      weights_dir=args.weights_dir, merge=merge)


def default_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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


def network_from_args(args: argparse.Namespace, device: str | torch.device | None = None):
    """What the tracking engine runs: the model from the model arguments, an ONNX Runtime session (``--onnx``), or
    the model wrapped in the backend the backend arguments ask for."""
    onnx = getattr(args, "onnx", None)
    if onnx:
        if args.variant or args.backbone_weights or args.checkpoint or args.weights_dir:
            raise ValueError("--onnx runs the exported file: give no --variant/--checkpoint/weights with it")
        from ..engine.onnx import OnnxNetwork

        return OnnxNetwork(onnx)
    model = model_from_args(args)
    flags = {name: bool(getattr(args, name, False)) for name in ("autocast", "compile", "cuda_graphs")}
    if not any(flags.values()):
        return model
    from ..engine.accelerate import build_network

    return build_network(model, device or args.device, args.dtype, **flags)
