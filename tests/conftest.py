"""Shared test fixtures: tiny generated models and weights files, and the reference fixtures of tests/fixtures/."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np

import pytest
import torch

from lorat_plugin import process
from lorat_plugin.data.synthetic import moving_box_video
from lorat_plugin.model import ModelConfig, build_model, save_checkpoint
from reference_cases import FIXTURES, case_frames, case_tensors, decode_metadata, digest

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))
# The thread chooser decides once per process from the machine's load: pinned to the count above, so that the
# suite's speed does not depend on the load when its first engine is built (the chooser's own tests reset it;
# subprocesses choose for themselves).
process._CHOICE = process.ThreadChoice(torch.get_num_threads(), "the test suite's count (tests/conftest.py)")

REPO = Path(__file__).resolve().parents[1]
# The sequence of the precision, int8 and ONNX tests; every tracking-*.safetensors is a case of the faithfulness test.
TRACKING_FIXTURE = "tracking-s224-d2-r64.safetensors"

# Width 32, 2 blocks, 28 px template (2x2 tokens), 56 px search (4x4 tokens): builds and runs in milliseconds.
TINY = ModelConfig(embed_dim=32, depth=2, num_heads=2, template_size=28, search_size=56, lora_rank=4, lora_alpha=8)


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


@dataclasses.dataclass(frozen=True)
class ReferenceCase:
    """One file of tests/fixtures/ with the model and inputs the reference implementation computed it from."""

    name: str
    config: ModelConfig
    backbone: Path  # Meta's dinov2_vit*14_pretrain.pth layout (torch.save)
    checkpoint: Path  # the trainable tensors, keyed as the reference writes its checkpoints (safetensors)
    inputs: dict[str, torch.Tensor]  # z, x, z_feat_mask
    expected: dict[str, torch.Tensor]  # what the reference computed (the file's tensors)
    record: dict  # the file's metadata: shapes, seeds, digests, and any scalar results


def reference_fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        raise FileNotFoundError(f"reference fixture {path} is missing: tests/fixtures/README.md says how to "
                                "regenerate it")
    return path


def load_reference_case(name: str, folder: Path) -> ReferenceCase:
    """Regenerate the weights and inputs of fixture ``name`` and write them where the loaders read them."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(reference_fixture_path(name)), "pt") as f:
        record = decode_metadata(f.metadata())
        expected = {key: f.get_tensor(key) for key in f.keys()}
    backbone, checkpoint, inputs = case_tensors(record)
    for what, tensors in (("backbone", backbone), ("checkpoint", checkpoint), ("inputs", inputs)):
        if digest(tensors) != record["sha256"][what]:
            pytest.fail(f"{name}: the regenerated {what} differs from the one the reference saw "
                        "(tests/reference_cases.py or NumPy's RandomState changed)")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(backbone, folder / "dinov2_backbone.pth")
    save_file(checkpoint, str(folder / "lorat_checkpoint.safetensors"))
    shape = record["config"]
    config = ModelConfig(embed_dim=shape["embed_dim"], depth=shape["depth"], num_heads=shape["num_heads"],
                         ffn=shape["ffn"], patch_size=shape["patch_size"], pretrain_grid=shape["pretrain_grid"],
                         template_size=shape["template_size"], search_size=shape["search_size"],
                         lora_rank=shape["lora_rank"], lora_alpha=shape["lora_alpha"],
                         template_area_factor=shape["template_area_factor"],
                         search_area_factor=shape["search_area_factor"])
    return ReferenceCase(name, config, folder / "dinov2_backbone.pth", folder / "lorat_checkpoint.safetensors",
                         inputs, expected, record)


# Every file is one parametrisation of its faithfulness test: a new fixture is tested without a code change.
NETWORK_FIXTURES = sorted(path.name for path in FIXTURES.glob("network-*.safetensors"))
TRACKING_FIXTURES = sorted(path.name for path in FIXTURES.glob("tracking-*.safetensors"))
assert NETWORK_FIXTURES and TRACKING_FIXTURE in TRACKING_FIXTURES, f"reference fixtures missing from {FIXTURES}"


@pytest.fixture(scope="session")
def reference_case(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ReferenceCase]:
    """``reference_case("network-b224-d2-r16.safetensors")``: a fixture of tests/fixtures/, weights on disk."""
    cache: dict[str, ReferenceCase] = {}

    def load(name: str) -> ReferenceCase:
        if name not in cache:
            cache[name] = load_reference_case(name, tmp_path_factory.mktemp(name.split(".")[0]))
        return cache[name]
    return load


@pytest.fixture(scope="session")
def reference_fixture() -> Callable[[str], Path]:
    """``reference_fixture("tracking-s224-d2-r64.safetensors")``: that file of tests/fixtures/ (it must exist)."""
    return reference_fixture_path


@pytest.fixture(scope="session")
def dinov2_writer() -> Callable[..., Path]:
    """:func:`write_dinov2`: ``dinov2_writer(path, config, layout="meta", seed=0)``."""
    return write_dinov2


@pytest.fixture(scope="session")
def moving_video() -> Callable[..., tuple[list[np.ndarray], np.ndarray]]:
    """:func:`lorat_plugin.data.synthetic.moving_box_video`: frames of a moving red target and its exact boxes."""
    return moving_box_video


@pytest.fixture(scope="session")
def reference_tracking(reference_case) -> Callable[..., tuple[torch.nn.Module, list[np.ndarray], np.ndarray]]:
    """``reference_tracking(merge=True, name=TRACKING_FIXTURE)``: (model, frames, init box) of a sequence that the
    reference tracked."""
    def load(merge: bool = True, name: str = TRACKING_FIXTURE) -> tuple[torch.nn.Module, list[np.ndarray], np.ndarray]:
        case = reference_case(name)
        frames, first_box = case_frames(case.record)
        if digest({str(i): frame for i, frame in enumerate(frames)}) != case.record["sha256"]["frames"]:
            pytest.fail(f"{name}: the regenerated frames differ from those the reference tracked")
        model = build_model(case.config, backbone_weights=case.backbone, checkpoint=case.checkpoint, merge=merge)
        return model, frames, first_box
    return load


@pytest.fixture(scope="session")
def randomize_adapters() -> Callable[..., torch.nn.Module]:
    """``randomize_adapters(model, std=0.1)``: adapters large enough that merging them visibly changes the network."""
    return randomize_lora
