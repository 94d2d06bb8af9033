"""Optimiser and learning-rate schedule of the recipe (the paper; the reference's optimizer and scheduler configs),
both from timm.

AdamW without weight decay for parameters that are 1-D after squeezing (biases, norms, the 1 x D classification
weight) and for names containing ``embed``. The rate warms up linearly per iteration from ``warmup_lr``, then follows
a cosine from ``lr`` to ``min_lr`` whose period is ``epochs`` whole epochs *after* the warm-up (timm's
``warmup_prefix=True``), so the last step ends short of the cosine's end, as in the reference. Layer-wise decay (the
full fine-tuning baseline) scales block ``i``'s rate by ``decay^(depth - i)``, the patch embedding's by
``decay^(depth + 1)``.
"""
from __future__ import annotations

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch import nn

from .config import OptimSection


def parameter_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """Trainable parameters split by weight decay (and, with ``layer_decay``, by depth with an ``lr_scale``)."""
    # 1 x D tensors are vectors too; timm's own rule catches the truly 1-D ones (biases, norms).
    exclude = ["*embed*", *(n for n, p in model.named_parameters() if p.ndim > 1 and p.squeeze().ndim <= 1)]
    if layer_decay is None:
        groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=exclude)
    else:  # layers from the model's group_matcher: patch embedding, blocks, then everything else
        groups = param_groups_layer_decay(model, weight_decay, no_weight_decay_list=exclude, layer_decay=layer_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return groups


def build_optimizer(model: nn.Module, optim: OptimSection) -> torch.optim.AdamW:
    groups = parameter_groups(model, optim.weight_decay, optim.layer_decay)
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                             weight_decay=optim.weight_decay, fused=False, foreach=None)


def build_schedule(optimizer: torch.optim.Optimizer, optim: OptimSection, steps_per_epoch: int,
                   epochs: int) -> CosineLRScheduler:
    """Per-iteration schedule: ``schedule.step_update(global_step)`` sets the rates of that step (a pure function
    of the step, so a resumed run needs no scheduler state)."""
    return CosineLRScheduler(optimizer, t_initial=max(1, steps_per_epoch * epochs), lr_min=optim.min_lr,
                             warmup_t=int(steps_per_epoch * optim.warmup_epochs), warmup_lr_init=optim.warmup_lr,
                             warmup_prefix=True, t_in_epochs=False)
