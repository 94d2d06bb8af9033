"""Optimiser and learning-rate schedule of the recipe (lorat-spec §3.5).

AdamW over the trainable parameters; no weight decay for parameters that are 1-D after squeezing (biases, the
1 x D last classification weight), for norm layers and for names containing ``embed`` (``token_type_embed``).
The rate warms up linearly per iteration from ``warmup_lr`` for ``warmup_epochs``, then follows a cosine from
``lr`` to ``min_lr`` whose period counts ``epochs`` whole epochs *after* the warm-up (timm's ``CosineLRScheduler``
with ``warmup_prefix=True``, stepped per iteration), so the last step ends near 99% of the cosine as in the reference.
Optional layer-wise decay (the full fine-tuning baseline) scales block ``i``'s rate by ``decay^(depth - i)`` and
the patch embedding's by ``decay^(depth + 1)``.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from .config import OptimSection


def _layer_id(name: str, depth: int) -> int:
    if name.startswith("patch_embed."):
        return 0
    match = re.match(r"blocks\.(\d+)\.", name)
    return int(match.group(1)) + 1 if match else depth + 1


def parameter_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """Trainable parameters split by (weight decay, lr scale); every group carries ``lr_scale``."""
    norm_prefixes = tuple(f"{name}." for name, m in model.named_modules()
                          if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)))
    depth = len(getattr(model, "blocks", ()))
    groups: dict[tuple[float, float], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.squeeze().ndim <= 1 or name.startswith(norm_prefixes) or "embed" in name
        decay = 0.0 if no_decay else weight_decay
        scale = 1.0 if layer_decay is None else layer_decay ** (depth + 1 - _layer_id(name, depth))
        group = groups.setdefault((decay, scale), {"params": [], "names": [], "weight_decay": decay,
                                                   "lr_scale": scale})
        group["params"].append(param)
        group["names"].append(name)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return list(groups.values())


def build_optimizer(model: nn.Module, optim: OptimSection) -> torch.optim.AdamW:
    groups = parameter_groups(model, optim.weight_decay, optim.layer_decay)
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                             weight_decay=optim.weight_decay, fused=False, foreach=None)


class WarmupCosine:
    """Learning rate as a pure function of the optimiser step (so a resumed run needs no scheduler state)."""

    def __init__(self, optim: OptimSection, steps_per_epoch: int, epochs: int) -> None:
        self.base, self.min_lr, self.warmup_lr = optim.lr, optim.min_lr, optim.warmup_lr
        self.warmup_steps = int(steps_per_epoch * optim.warmup_epochs)
        self.cosine_steps = max(1, steps_per_epoch * epochs)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_lr + (self.base - self.warmup_lr) * step / self.warmup_steps
        t = step - self.warmup_steps
        if t >= self.cosine_steps:
            return self.min_lr
        return self.min_lr + 0.5 * (self.base - self.min_lr) * (1 + math.cos(math.pi * t / self.cosine_steps))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
