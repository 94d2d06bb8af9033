"""Where model weights come from: explicit paths, a weights folder, environment variables, or the shipped demo model.

Nothing is ever downloaded. Environment variables let toolkits that start the tracker as a separate process (VOT's
``trackers.ini``) name weights without machine-specific paths:

* ``LORAT_VARIANT``: variant name (``B-224``, ...) or ``demo``;
* ``LORAT_BACKBONE_WEIGHTS``: the DINOv2 file;
* ``LORAT_CHECKPOINT``: the LoRAT checkpoint;
* ``LORAT_WEIGHTS_DIR``: a folder holding Meta's DINOv2 files and the released checkpoints under their usual names
  (``dinov2_vitb14_pretrain.pth``, ``base.bin``, ``large-378.bin``, ...).
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from .build import build_model
from .config import DINOV2_FILES, RELEASED_CHECKPOINTS, backbone_size, canonical_variant, dinov2_hint, get_config
from .network import LoRAT

DEMO = "demo"
DEMO_ASSET = "demo_model.safetensors"


def demo_checkpoint() -> Path:
    """The small demo model shipped inside the package (trained on the procedural benchmark; see docs/demo.md)."""
    path = Path(str(resources.files("lorat_plugin") / "assets" / DEMO_ASSET))
    if not path.is_file():
        raise FileNotFoundError(f"the demo model {path} is missing from this installation; reinstall the "
                                "package, or rebuild the model as docs/demo.md says (`lorat train --config demo`)")
    return path


def resolve_weights(variant: str | None = None, *, backbone_weights: str | os.PathLike | None = None,
                    checkpoint: str | os.PathLike | None = None, weights_dir: str | os.PathLike | None = None,
                    ) -> tuple[str | None, Path | None, Path | None]:
    """Settle (variant, backbone file, checkpoint file) from arguments, then environment variables, then defaults.
    With nothing given at all, the shipped demo model is used."""
    env = os.environ
    variant = variant or env.get("LORAT_VARIANT") or None
    backbone_weights = backbone_weights or env.get("LORAT_BACKBONE_WEIGHTS") or None
    checkpoint = checkpoint or env.get("LORAT_CHECKPOINT") or None
    weights_dir = weights_dir or env.get("LORAT_WEIGHTS_DIR") or None
    if variant == DEMO or (variant is None and not (backbone_weights or checkpoint or weights_dir)):
        return None, None, demo_checkpoint()
    if weights_dir is not None:
        if variant is None:
            raise ValueError("a weights folder needs a variant (e.g. --variant B-224) to know which files to use")
        folder = Path(weights_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"weights folder not found: {folder}")
        size = backbone_size(get_config(variant))
        if backbone_weights is None and size is not None:
            backbone_weights = folder / DINOV2_FILES[size]
        if checkpoint is None:
            canonical = canonical_variant(variant) or str(variant)
            candidates = [folder / f"{canonical}.safetensors", folder / RELEASED_CHECKPOINTS.get(canonical, "")]
            checkpoint = next((c for c in candidates if c.is_file()), None)
            if checkpoint is None:
                raise FileNotFoundError(
                    f"no checkpoint for {canonical} in {folder}: expected {RELEASED_CHECKPOINTS.get(canonical)} "
                    "(released LoRAT weights, linked from https://github.com/LitingLin/LoRAT) or "
                    f"{canonical}.safetensors (written by `lorat train`)")
    if backbone_weights is None and checkpoint is None:
        raise ValueError(f"variant {variant} needs weights: a DINOv2 backbone file ({dinov2_hint(get_config(variant))})"
                         " and a LoRAT checkpoint, or a folder holding both (--weights-dir / LORAT_WEIGHTS_DIR)")
    return variant, Path(backbone_weights) if backbone_weights else None, Path(checkpoint) if checkpoint else None


def load_model(variant: str | None = None, *, backbone_weights: str | os.PathLike | None = None,
               checkpoint: str | os.PathLike | None = None, weights_dir: str | os.PathLike | None = None,
               merge: bool = True, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None) -> LoRAT:
    """The model a user means: see :func:`resolve_weights`. Merged for inference by default."""
    variant, backbone, ckpt = resolve_weights(variant, backbone_weights=backbone_weights, checkpoint=checkpoint,
                                              weights_dir=weights_dir)
    return build_model(variant, backbone_weights=backbone, checkpoint=ckpt, merge=merge, device=device, dtype=dtype)
