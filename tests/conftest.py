"""Shared test fixtures: tiny generated models and weights files, and the reference fixtures when present."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

import pytest
import torch

from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.model import ModelConfig, build_model, save_checkpoint

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LORAT_SHARED_DIR", REPO.parent / "shared"))
PARITY_FIXTURE = SHARED / "fixtures" / "reference-parity-s224"
TRACKING_FIXTURE = SHARED / "fixtures" / "reference-tracking-s224"

# Width 32, 2 blocks, 28 px template (2x2 tokens), 56 px search (4x4 tokens): builds and runs in milliseconds.
TINY = ModelConfig(embed_dim=32, depth=2, num_heads=2, template_size=28, search_size=56, lora_rank=4, lora_alpha=8)


def require_fixture(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"reference fixture {path} is absent (it lives in ../shared/fixtures beside a development "
                    "checkout; a user's checkout has none)")
    return path


def fixture_config() -> ModelConfig:
    """The model shape of the reference fixtures (reference-parity-s224/config.json)."""
    shape = json.loads((require_fixture(PARITY_FIXTURE) / "config.json").read_text())
    return ModelConfig(embed_dim=shape["embed_dim"], depth=shape["depth"], num_heads=shape["num_heads"],
                       ffn=shape["ffn"], template_size=shape["template_size"], search_size=shape["search_size"],
                       lora_rank=shape["lora_r"], lora_alpha=shape["lora_alpha"])


def load_reference_tracking(merge: bool = True) -> tuple[torch.nn.Module, list[np.ndarray], np.ndarray]:
    """(model, frames, init box) of reference-tracking-s224: the parity backbone + that folder's checkpoint."""
    from lorat_plugin.data import read_image

    tracking = require_fixture(TRACKING_FIXTURE)
    model = build_model(fixture_config(), backbone_weights=PARITY_FIXTURE / "dinov2_backbone.pth",
                        checkpoint=tracking / "lorat_checkpoint.safetensors", merge=merge)
    frames = [read_image(f) for f in sorted((tracking / "frames").glob("*.png"))]
    return model, frames, np.loadtxt(tracking / "init_box.txt", delimiter=",")


def randomize_lora(model: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Adapters large enough that merging them visibly changes the network."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, std)
    return model


def write_dinov2(path: Path, config: ModelConfig, *, layout: str = "meta", seed: int = 0) -> Path:
    """A randomly initialised backbone saved like Meta's ``dinov2_*_pretrain.pth`` (or timm's safetensors)."""
    torch.manual_seed(seed)
    plain = build_model(config.replace(tuning="full"))
    grid = config.pretrain_grid
    state = {k: v for k, v in plain.state_dict().items() if k.startswith(("patch_embed.", "blocks.", "norm."))}
    for key in list(state):
        if key.endswith("ls1.gamma") or key.endswith("ls2.gamma"):
            state[key] = torch.rand_like(state[key]) * 0.5 + 0.5  # layer scale that matters
    state["pos_embed"] = torch.randn(1, 1 + grid * grid, config.embed_dim) * 0.02
    state["cls_token"] = torch.randn(1, 1, config.embed_dim)
    if layout == "meta":
        state["mask_token"] = torch.zeros(1, config.embed_dim)
        if config.ffn == "swiglu":
            state = {k.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3."): v for k, v in state.items()}
        torch.save(state, path)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return TINY


@pytest.fixture
def tiny_backbone(tmp_path: Path) -> Path:
    return write_dinov2(tmp_path / "dinov2_tiny_pretrain.pth", TINY)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, tiny_backbone: Path) -> Path:
    """A self-contained tiny checkpoint (config + backbone + adapters) in this package's format."""
    torch.manual_seed(1)
    model = build_model(TINY, backbone_weights=tiny_backbone)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
    return save_checkpoint(model, tmp_path / "tiny.safetensors", include_backbone=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def reference_fixture() -> Callable[[str], Path]:
    """``reference_fixture("reference-parity-s224")``: that folder of ../shared/fixtures, or the test skips."""
    return lambda name: require_fixture(SHARED / "fixtures" / name)


@pytest.fixture(scope="session")
def parity_config() -> ModelConfig:
    return fixture_config()


@pytest.fixture(scope="session")
def dinov2_writer() -> Callable[..., Path]:
    """:func:`write_dinov2`: ``dinov2_writer(path, config, layout="meta", seed=0)``."""
    return write_dinov2


@pytest.fixture(scope="session")
def moving_video() -> Callable[..., tuple[list[np.ndarray], np.ndarray]]:
    """:func:`lorat_plugin.data.synthetic.moving_box_video`: frames of a moving red target and its exact boxes."""
    return moving_box_video


@pytest.fixture(scope="session")
def reference_tracking() -> Callable[..., tuple[torch.nn.Module, list[np.ndarray], np.ndarray]]:
    """``reference_tracking(merge=True)``: (model, frames, init box) of reference-tracking-s224, or the test skips."""
    return load_reference_tracking


@pytest.fixture(scope="session")
def randomize_adapters() -> Callable[..., torch.nn.Module]:
    """``randomize_adapters(model, std=0.1)``: adapters large enough that merging them visibly changes the network."""
    return randomize_lora
