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
                       help="inference precision (default: fp32 on CPU, fp16 autocast on CUDA)")


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
