"""One optimiser step of the recipe, shared by the trainer and the benchmarks (train_speed.py, gpu_check.py).

Forward under autocast, the loss in fp32, backward through the GradScaler (fp16), unscale, clip, AdamW step.
:func:`build_train_step` and :func:`synthetic_batch` give a ready step on random weights and generated pairs for
measuring a variant without any data or weights files.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..distributed import local_device
from ..geometry import normalize_images, template_mask
from ..model import LoRAT, ModelConfig, build_model, get_config
from .config import LossSection, OptimSection
from .labels import normalized_box, positive_cells
from .loss import tracking_loss
from .optim import build_optimizer

log = logging.getLogger(__name__)


def amp_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of ``train.dtype`` on ``device`` (fp16 falls back to fp32 on the CPU)."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]
    if dtype == torch.float16 and device.type == "cpu":
        log.warning("train.dtype=fp16 is not used on the CPU; training in fp32 (bf16 works on CPU)")
        return torch.float32
    return dtype


def attention_kernel(name: str) -> contextlib.AbstractContextManager:
    """The context that makes ``scaled_dot_product_attention`` use the ``train.attention`` kernel."""
    if name == "default":
        return contextlib.nullcontext()
    if name == "math":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel([SDPBackend.MATH])
    raise ValueError(f"train.attention must be 'default' or 'math', got {name!r}")


@dataclass(frozen=True)
class StepReport:
    """What one :meth:`TrainStep.run` did. ``grad_norm`` is before clipping; ``skipped``: non-finite gradients, the
    fp16 GradScaler skipped the update and lowered ``loss_scale`` (its scale after the step; None unless fp16)."""

    loss: float
    cls_loss: float
    box_loss: float
    grad_norm: float
    skipped: bool
    loss_scale: float | None


class TrainStep:
    """One optimiser step: :meth:`backward` per micro-batch, then :meth:`update`; :meth:`run` does both."""

    def __init__(self, model: LoRAT, network: nn.Module, optimizer: torch.optim.Optimizer, *, amp: torch.dtype,
                 device: torch.device, grad_clip: float, loss: LossSection,
                 scaler: torch.amp.GradScaler | None = None, attention: str = "default") -> None:
        self.model, self.network, self.optimizer = model, network, optimizer
        self.amp, self.device, self.grad_clip, self.loss, self.attention = amp, device, grad_clip, loss, attention
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.scaler = scaler or torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    def backward(self, batch: dict[str, torch.Tensor], accumulation: int = 1
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward and backward of one micro-batch (uint8 images, labels); the loss is scaled by 1/accumulation."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        z, x = normalize_images(batch["z"]), normalize_images(batch["x"])
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp != torch.float32), \
                attention_kernel(self.attention):
            out = self.network(z, x, batch["z_feat_mask"])
        loss, parts = tracking_loss(out.score_map, out.boxes, batch["positive"], batch["box"],
                                    cls_weight=self.loss.cls_weight, box_weight=self.loss.box_weight,
                                    iou_aware=self.loss.iou_aware)
        self.scaler.scale(loss / accumulation).backward()
        return loss.detach(), parts

    def update(self) -> torch.Tensor:
        """Unscale, clip (``grad_clip`` <= 0: none), step, zero the gradients; returns the norm before clipping, on
        the device. Non-finite bf16/fp32 steps are not checked here (a host wait): the trainer checks at log points."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip if self.grad_clip > 0 else math.inf)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm.detach()

    def run(self, batch: dict[str, torch.Tensor]) -> StepReport:
        """One whole optimiser step on one batch, read back to the host."""
        loss, parts = self.backward(batch)
        grad_norm = float(self.update())
        return StepReport(loss=float(loss), cls_loss=float(parts["cls"]), box_loss=float(parts["box"]),
                          grad_norm=grad_norm, skipped=not math.isfinite(grad_norm),
                          loss_scale=float(self.scaler.get_scale()) if self.scaler.is_enabled() else None)


def build_train_step(variant: str | ModelConfig, *, tuning: str = "lora", dtype: str = "fp16",
                     device: str | torch.device | None = None, seed: int = 0, compile: bool = False,
                     attention: str = "default") -> TrainStep:
    """The recipe's training step for a variant (``"B-224"``, ... or a :class:`ModelConfig`) with random weights:
    ``tuning`` ``"lora"`` or ``"full"``, autocast ``dtype`` ``"fp16"`` (with a GradScaler), ``"bf16"`` or
    ``"fp32"``, AdamW with the recipe's parameter groups and clipping. ``device`` defaults to CUDA when available.

    Used by ``benchmarks/gpu_check.py`` and ``benchmarks/train_speed.py``::

        step = build_train_step("B-224", tuning="lora", dtype="fp16", device="cuda")
        report = step.run(synthetic_batch(step.model.config, 16))  # StepReport(loss=..., loss_scale=...)
    """
    device = local_device(device)
    config = get_config(variant).replace(tuning=tuning)
    torch.manual_seed(seed)
    model = build_model(config, device=device).train()
    network = torch.compile(model) if compile else model
    optim = OptimSection()
    return TrainStep(model, network, build_optimizer(model, optim), amp=amp_dtype(dtype, device), device=device,
                     grad_clip=optim.grad_clip, loss=LossSection(), attention=attention)


def synthetic_batch(config: ModelConfig, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch shaped like the input pipeline's (uint8 noise crops, a centred template mask, the positive cells and
    normalised box of a random search box near the centre), on the CPU."""
    rng = np.random.default_rng(seed)
    t, s = config.template_size, config.search_size
    z = torch.from_numpy(rng.integers(0, 256, (batch_size, 3, t, t), np.uint8))
    x = torch.from_numpy(rng.integers(0, 256, (batch_size, 3, s, s), np.uint8))
    mask = torch.from_numpy(template_mask(np.array([t / 4, t / 4, 3 * t / 4, 3 * t / 4]), t, config.template_grid))
    positives, boxes = [], []
    for _ in range(batch_size):
        wh = rng.uniform(0.15, 0.35, 2) * s
        centre = s / 2 + rng.uniform(-0.2, 0.2, 2) * s
        box = np.concatenate((centre - wh / 2, centre + wh / 2))
        positives.append(torch.from_numpy(positive_cells(box, s, config.search_grid)))
        boxes.append(torch.from_numpy(normalized_box(box, s)))
    return {"z": z, "x": x, "z_feat_mask": mask.expand(batch_size, -1, -1).clone(),
            "positive": torch.stack(positives), "box": torch.stack(boxes)}
