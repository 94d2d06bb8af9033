"""The shipped demo model: the recipe's stage-0 initial backbone, and packaging a trained checkpoint as
``assets/demo_model.safetensors``."""
from __future__ import annotations

from pathlib import Path

import torch

from .spec import asset_path


def sincos_position_table(grid: int, dim: int) -> torch.Tensor:
    """1 x grid*grid x dim fixed 2-D sine-cosine position codes (MAE's): half the channels encode the column,
    half the row, each as sines and cosines of geometrically spaced frequencies."""
    if dim % 4:
        raise ValueError(f"the embedding width {dim} must be a multiple of 4 for 2-D sine-cosine codes")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")
    parts = []
    for coordinate in (cols.flatten(), rows.flatten()):
        angles = coordinate[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()[None]


def write_initial_backbone(config_file: str | Path, path: str | Path) -> Path:
    """Stage 0 of the demo recipe: a randomly initialised backbone (seeded by the training config) whose position
    table starts as 2-D sine-cosine codes. Training from scratch then starts with tokens that know where they are,
    which the box regression needs; everything else is the model's own random initialisation."""
    from ..model import build_model, save_checkpoint
    from ..train import load_config

    config = load_config(config_file)
    model_config = config.model.model_config().replace(tuning="full")
    torch.manual_seed(config.train.seed)
    model = build_model(model_config)
    with torch.no_grad():
        model.pos_embed.copy_(sincos_position_table(model_config.search_grid, model_config.embed_dim))
    return save_checkpoint(model, path, include_backbone=True,
                           extra_metadata={"description": "random initialisation with sine-cosine position codes "
                                                          "(demo recipe, stage 0)"})


DEMO_DESCRIPTION = ("lorat-plugin demo model: a small LoRAT (ViT width 192, depth 6, 56/112 px) whose backbone was "
                    "pre-trained from scratch on the procedural train split and then frozen and adapted with LoRA "
                    "and the head (configs/demo-pretrain.yaml, configs/demo.yaml). For demonstrations and tests only; "
                    "not a benchmark model.")


def package_demo_model(source: str | Path, destination: str | Path | None = None) -> Path:
    """Label a checkpoint written by ``lorat train --config configs/demo.yaml`` as the demo model and store it,
    adapters unmerged and backbone included, in half precision (it is loaded into float32) to keep the package
    small."""
    from ..model import build_model, save_checkpoint
    from ..model.weights import read_weights

    source = Path(source)
    weights = read_weights(source, what="demo model checkpoint")
    if not weights.is_backbone:
        raise ValueError(f"{source} holds no backbone: train the demo with train.include_backbone: true")
    model = build_model(checkpoint=source)
    if not model.has_lora:
        raise ValueError(f"{source} is not a LoRA checkpoint (tuning {model.config.tuning}); package the stage-2 "
                         "model of configs/demo.yaml")
    destination = Path(destination) if destination else asset_path("demo_model.safetensors")
    metadata = {"description": DEMO_DESCRIPTION, "demo_model": "true", "stored_dtype": "float16",
                "trained_from": source.name, **{k: v for k, v in weights.metadata.items()
                                                if k in ("run", "epochs_done", "global_step")}}
    with torch.no_grad():
        model.half()
    return save_checkpoint(model, destination, include_backbone=True, extra_metadata=metadata)
