"""What a run leaves on disk: model checkpoints (this package's safetensors format) and the resumable state.

``<output>/checkpoints/epoch_<N>.safetensors`` (N = epochs completed) every ``checkpoint_every`` epochs and at the
last one, the newest ``keep_checkpoints`` kept; ``<output>/model.safetensors`` when the run finishes. They hold the
trainable tensors plus config and LoRA alpha (:func:`lorat_plugin.model.save_checkpoint`), the backbone too for
full fine-tuning or ``train.include_backbone``.

``<output>/state.pt`` is everything else needed to continue bit for bit: the trainable tensors in full precision,
the AdamW moments, the GradScaler, and where the run stands (epoch, step). Sampling needs no saved state: every
sample's randomness is a function of (seed, epoch, index), the learning rate a function of the step.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import atomic_path
from ..model import save_checkpoint

STATE_FILE = "state.pt"
STATE_FORMAT = "lorat-plugin-train-state"
STATE_VERSION = 1
FINAL_CHECKPOINT = "model.safetensors"


class StateError(ValueError):
    """A resumable state that does not fit the run being resumed."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except RuntimeError as e:  # torch.save reports a failed write (a full disk ...) as a RuntimeError
        raise OSError(f"cannot write {path}: {e}") from e


def save_state(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               epoch: int, step_in_epoch: int, global_step: int, config: dict[str, Any], world_size: int) -> None:
    atomic_torch_save({
        "format": STATE_FORMAT, "version": STATE_VERSION,
        "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
        "trainable": {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "config": config, "world_size": world_size, "torch_version": str(torch.__version__),
    }, path)


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no resumable state at {path}: nothing to resume (drop --resume to start the run)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, foreign pickle ...
        raise StateError(f"{path} is not a readable training state ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise StateError(f"{path} is not a lorat-plugin training state")
    if state.get("version") != STATE_VERSION:
        raise StateError(f"{path} has state version {state.get('version')}, this lorat-plugin reads {STATE_VERSION}")
    return state


def restore_trainable(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise StateError(f"{path} does not match the model's trainable parameters (missing: {missing[:3]}, "
                         f"unexpected: {unexpected[:3]}): was the model section of the config changed?")
    with torch.no_grad():
        for name, p in params.items():
            if tensors[name].shape != p.shape:
                raise StateError(f"{path}: {name} has shape {tuple(tensors[name].shape)}, the model "
                                 f"{tuple(p.shape)}")
            p.copy_(tensors[name])


def restore_scaler(scaler: torch.amp.GradScaler, saved: dict[str, Any]) -> None:
    """Continue the GradScaler's state; a state written without one (bf16/fp32) leaves an fp16 run's scaler at
    its initial scale, and an fp16 state resumed in bf16/fp32 drops it."""
    if saved and scaler.is_enabled():
        scaler.load_state_dict(saved)


def write_checkpoint(model: nn.Module, folder: Path, epochs_done: int, total_epochs: int, keep: int, *,
                     include_backbone: bool | None, metadata: dict[str, str]) -> Path:
    """Write this epoch's checkpoint and delete the oldest periodic ones beyond ``keep``."""
    path = save_checkpoint(model, folder / f"epoch_{epochs_done:0{len(str(total_epochs))}d}.safetensors",
                           include_backbone=include_backbone or None, extra_metadata=metadata)
    periodic = sorted((p for p in folder.glob("epoch_*.safetensors")
                       if re.fullmatch(r"epoch_\d+\.safetensors", p.name)), key=lambda p: int(p.stem.split("_")[1]))
    for old in periodic[:-keep]:
        old.unlink(missing_ok=True)
    return path
