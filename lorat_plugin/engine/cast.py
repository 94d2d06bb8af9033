"""The low-precision copy of the merged model that the bf16 / fp16 / int8 backends run.

bf16 / fp16 weights are *stored* low (autocast re-casts every weight per forward, on a CPU about the cost of the
products). Which modules run low is the model's decision (``LoRAT.low_precision_modules``: the patch embedding, the
blocks, the head's hidden layers); the model's forward pass casts at those boundaries, so the copy needs no hooks.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..model import LoRAT


def cast_model(model: LoRAT, dtype: torch.dtype, device: torch.device | str | None = None,
               compute_dtype: torch.dtype | None = None) -> LoRAT:
    """A copy of a merged ``model`` whose low-precision modules hold ``dtype`` weights on ``device``, sharing the
    model's float32 tensors elsewhere (never written): half the model's memory in bf16/fp16. ``compute_dtype``
    (default ``dtype``) is the precision the blocks compute in: the int8 backend keeps ``dtype`` float32 or bf16
    and swaps the blocks afterwards (:func:`~lorat_plugin.engine.onednn.fuse_blocks`)."""
    if getattr(model, "has_lora", False):
        raise ValueError("cast_model needs a merged model (model.strip_lora() or load_model(merge=True))")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    low_ids = {id(p) for module in model.low_precision_modules() for p in module.parameters()}
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(p.detach().to(device, dtype if id(p) in low_ids else p.dtype), requires_grad=False)
    for b in model.buffers():
        memo[id(b)] = b.to(device)
    fast = copy.deepcopy(model, memo)
    fast.compute_dtype = compute_dtype or dtype
    return fast.eval()
