"""The network call of the tracking engine: ``network(z, x, z_feat_mask) -> (score_logits B x h x w, boxes
B x h x w x 4)`` on tensors on ``network.device``; anything with that call and :class:`NetworkBackend`'s attributes
can replace :class:`TorchNetwork` without touching the cropping or post-processing around it.
"""
from __future__ import annotations

import contextlib
import copy
import logging
from typing import Protocol

import torch
from torch import nn

from ..model import LoRAT, ModelConfig
from ..model.network import NetworkOutput
from .precision import full_fp32

log = logging.getLogger(__name__)


class NetworkBackend(Protocol):
    """What the engine needs from a network."""

    config: ModelConfig
    device: torch.device
    dtype: torch.dtype  # the compute precision; inputs are always passed as float32
    description: str    # one line naming what runs, for logs, results and the benchmark's table

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> NetworkOutput: ...


def merged_model(model: LoRAT) -> LoRAT:
    """``model`` itself when it is merged; a merged copy when it still carries LoRA adapters (the user's model is
    left as it is), so what runs is always the plain ViT."""
    if not isinstance(model, torch.nn.Module) or not isinstance(getattr(model, "config", None), ModelConfig):
        raise TypeError(f"expected a LoRAT model (lorat_plugin.model.build_model / load_model), got {type(model)}")
    if getattr(model, "has_lora", False):
        log.info("the model carries unmerged LoRA adapters: running a merged copy")
        model = copy.deepcopy(model)
        model.strip_lora()
    return model


class TorchNetwork:
    """A prepared LoRAT module (merged; for low precision the copy :func:`~lorat_plugin.engine.cast.cast_model`
    makes) run in eval mode under ``torch.inference_mode``; with ``autocast`` under ``torch.autocast`` at ``dtype``
    around its fp32 weights (the reference's AMP inference). The backend table
    (:mod:`lorat_plugin.engine.backends`) builds it with resolved values: nothing is decided here."""

    def __init__(self, module: nn.Module, device: torch.device, dtype: torch.dtype, description: str, *,
                 autocast: bool = False) -> None:
        self.module = module.eval()
        self.config: ModelConfig = module.config
        self.device = device
        self.dtype = dtype
        self.description = description
        self.autocast = autocast

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> NetworkOutput:
        amp = (torch.autocast(self.device.type, dtype=self.dtype) if self.autocast
               else contextlib.nullcontext())
        with torch.inference_mode(), full_fp32(self.device, self.dtype), amp:
            return self.module(z, x, z_feat_mask)
