"""Random LoRAT weights, inputs and frames that anyone can regenerate bit for bit, for the reference fixtures.

The fixtures in tests/fixtures/ hold only what the reference implementation (LitingLin/LoRAT) computed: network
outputs, one training step's loss and gradients, the boxes of a tracked sequence. The weights, inputs and frames it
computed them from are not stored: they come from this module, which draws from NumPy's legacy ``RandomState`` (its
stream is frozen by NumPy's compatibility policy, NEP 19) with uniform and integer draws only (no libm), so every
machine gets the same values. Each fixture records the tensor names and shapes in the reference's own key layout,
the seeds, and a SHA-256 of everything generated, which the tests check before comparing anything.

Used by tests/conftest.py and by tests/fixtures/make_reference_fixtures.py (which runs the reference code).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def scale_for(key: str, shape: tuple[int, ...], block_gain: float = 1.0) -> tuple[float, float]:
    """(centre, half-width) of the uniform draw for one tensor, chosen so that every part of the model moves the output.

    Linear weights get a unit-variance-preserving range; layer-scale gammas and norm weights sit well away from 0
    (DINOv2's own gammas are ~1e-5 at initialisation, which would hide the blocks); the LoRA factors are as large as
    the frozen weights they adapt, so merged and unmerged graphs differ visibly. ``block_gain`` scales the blocks'
    weight matrices and LoRA ``B`` factors (a trained network's blocks are gentler than unit gain).
    """
    if key.startswith("blocks.") and len(shape) == 2 and not key.endswith(".lora.A") and block_gain != 1.0:
        centre, half_width = scale_for(key, shape)
        return centre, half_width * block_gain
    if key.endswith(("ls1.gamma", "ls2.gamma")):
        return 0.75, 0.25
    if key.endswith("norm1.weight") or key.endswith("norm2.weight") or key == "norm.weight":
        return 1.0, 0.5
    if key.endswith(".lora.A"):
        return 0.0, math.sqrt(3.0 / shape[1])
    if key.endswith(".lora.B"):
        return 0.0, 0.5 * math.sqrt(3.0 / shape[1])
    if key in ("pos_embed", "cls_token", "mask_token"):
        return 0.0, 0.1
    if key == "token_type_embed":
        return 0.0, 0.5
    if key.endswith(".bias"):
        return 0.0, 0.1
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return 0.0, math.sqrt(3.0 / fan_in)


def fill(manifest: Iterable[tuple[str, tuple[int, ...]]], seed: int,
         ranges: dict[str, tuple[float, float]] | None = None, block_gain: float = 1.0) -> dict[str, torch.Tensor]:
    """One float32 tensor per (key, shape), drawn in manifest order from ``RandomState(seed)``.

    ``ranges``: (centre, half-width) for some keys instead of :func:`scale_for`'s.
    """
    rng = np.random.RandomState(seed)
    tensors = {}
    for key, shape in manifest:
        centre, half_width = (ranges or {}).get(key) or scale_for(key, tuple(shape), block_gain)
        values = centre + (rng.random_sample(tuple(shape)) * 2.0 - 1.0) * half_width
        tensors[key] = torch.from_numpy(values.astype(np.float32))
    return tensors


def random_inputs(template_size: int, search_size: int, patch_size: int, batch: int,
                  seed: int) -> dict[str, torch.Tensor]:
    """``z``, ``x`` (already normalised images) and ``z_feat_mask`` (1 = template foreground token)."""
    rng = np.random.RandomState(seed)
    grid = template_size // patch_size
    z = rng.random_sample((batch, 3, template_size, template_size)) * 4.0 - 2.0
    x = rng.random_sample((batch, 3, search_size, search_size)) * 4.0 - 2.0
    mask = rng.random_sample((batch, grid, grid)) > 0.5
    return {"z": torch.from_numpy(z.astype(np.float32)), "x": torch.from_numpy(x.astype(np.float32)),
            "z_feat_mask": torch.from_numpy(mask.astype(np.int64))}


def moving_target_frames(count: int, size: tuple[int, int], target: tuple[int, int],
                         seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` H x W x 3 uint8 frames of a textured target on a blocky textured background, moving by a random
    walk of whole pixels, each frame with its own pixel noise; and the target's first box (x, y, w, h).

    Integer arithmetic only, so the frames are the same on every machine.
    """
    rng = np.random.RandomState(seed)
    width, height = size
    target_width, target_height = target
    coarse = rng.randint(0, 256, (height // 8 + 1, width // 8 + 1, 3))
    background = coarse.repeat(8, axis=0).repeat(8, axis=1)[:height, :width]
    texture = rng.randint(0, 256, (target_height, target_width, 3))
    texture[target_height // 3:2 * target_height // 3] = (250, 40, 40)  # a red band: the target is not background
    x, y = width // 3, height // 3
    frames = []
    for i in range(count):
        if i:
            x = int(np.clip(x + rng.randint(-4, 5), 0, width - target_width))
            y = int(np.clip(y + rng.randint(-3, 4), 0, height - target_height))
        image = background.copy()
        image[y:y + target_height, x:x + target_width] = texture
        image = np.clip(image + rng.randint(-8, 9, image.shape), 0, 255)
        frames.append(image.astype(np.uint8))
        if i == 0:
            first = np.array([x, y, target_width, target_height], dtype=np.float64)
    return frames, first


def case_frames(record: dict) -> tuple[list[np.ndarray], np.ndarray]:
    """(frames, first box x, y, w, h) of a tracking fixture's record."""
    video = record["video"]
    return moving_target_frames(video["frames"], tuple(video["size"]), tuple(video["target"]), video["seed"])


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names and bytes of the tensors, in sorted name order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        value = tensors[key]
        h.update((value.contiguous().numpy() if isinstance(value, torch.Tensor) else np.ascontiguousarray(value))
                 .tobytes())
    return h.hexdigest()


def case_tensors(record: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(backbone in Meta's DINOv2 layout, LoRAT checkpoint in the reference's layout, inputs) of a fixture's record."""
    config, seeds = record["config"], record["seeds"]
    gain = record.get("block_gain", 1.0)
    backbone = fill(record["backbone_manifest"], seeds["backbone"], block_gain=gain)
    checkpoint = fill(record["checkpoint_manifest"], seeds["checkpoint"], record.get("checkpoint_ranges"), gain)
    inputs = random_inputs(config["template_size"], config["search_size"], config["patch_size"], record["batch"],
                           seeds["inputs"])
    return backbone, checkpoint, inputs


def manifest_of(state: dict[str, torch.Tensor]) -> list[list]:
    return [[key, list(value.shape)] for key, value in state.items()]


def encode_metadata(record: dict) -> dict[str, str]:
    """safetensors metadata holds strings only: the whole record as one JSON string."""
    return {"record": json.dumps(record)}


def decode_metadata(metadata: dict[str, str]) -> dict:
    return json.loads(metadata["record"])
