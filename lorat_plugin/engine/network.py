"""The network call of the tracking engine: ``network(z, x, z_feat_mask) -> (score_logits B x h x w, boxes
B x h x w x 4)`` on tensors on ``network.device``; anything with that call and :class:`NetworkBackend`'s attributes
can replace :class:`TorchNetwork` without touching the cropping or post-processing around it.
"""
from __future__ import annotations

import copy
import logging
from typing import Protocol

import torch

from ..model import LoRAT, ModelConfig
from .precision import full_fp32, resolve_device, resolve_precision

log = logging.getLogger(__name__)


class NetworkBackend(Protocol):
    """What the engine needs from a network."""

    config: ModelConfig
    device: torch.device
    dtype: torch.dtype  # the compute precision; inputs are always passed as float32

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]: ...


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
    """The merged LoRAT module (:func:`merged_model`) in eval mode under ``torch.inference_mode`` and, for bf16/fp16,
    autocast around fp32 weights (the reference's AMP inference). A merged model is moved to ``device`` and switched
    to eval mode in place (deep-copy a model that is still being trained)."""

    def __init__(self, model: LoRAT, device: torch.device | str | None = None,
                 dtype: torch.dtype | str | None = None) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(dtype, self.device)
        self.model = merged_model(model).to(self.device).eval()
        self.config: ModelConfig = self.model.config

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), full_fp32(self.device, self.dtype), torch.autocast(
                self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            out = self.model(z, x, z_feat_mask)
        return out["score_map"], out["boxes"]
