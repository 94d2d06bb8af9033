"""The network call of the tracking engine, behind one small interface.

The engine only ever calls ``network(z, x, z_feat_mask) -> (score_logits B x h x w, boxes B x h x w x 4)`` on
tensors that already live on ``network.device``. Anything with that call and the attributes of
:class:`NetworkBackend` can replace :class:`TorchNetwork` (bf16 weights, ``torch.compile``, CUDA graphs, an ONNX
Runtime session ...) without touching the cropping or post-processing around it.
"""
from __future__ import annotations

import copy
import logging
from typing import Protocol

import torch

from ..model import LoRAT, ModelConfig

log = logging.getLogger(__name__)

_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "int8": torch.int8,  # int8 linear layers in the transformer blocks, CPU only (lorat_plugin.engine.int8)
}


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if present, else Apple MPS, else CPU."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available (torch {torch.__version__}); "
                         "use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device} requested but Apple MPS is not available; use --device cpu")
    return device


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """Inference precision: ``fp32``, ``bf16`` or ``fp16`` (autocast around fp32 weights). ``None``: fp16 on CUDA
    (the reference's default), fp32 elsewhere."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        resolved = _DTYPES.get(str(dtype).lower().replace("torch.", ""))
        if resolved is None:
            raise ValueError(f"unknown inference dtype {dtype!r}: use fp32, bf16, fp16 or int8")
    if resolved not in (torch.float32, torch.bfloat16, torch.float16, torch.int8):
        raise ValueError(f"unsupported inference dtype {resolved}: use fp32, bf16, fp16 or int8")
    if resolved == torch.int8 and device.type != "cpu":
        raise ValueError(f"int8 runs on CPUs only (oneDNN's quantised kernels), not on {device}: "
                         "use fp16 or bf16 there")
    return resolved


class NetworkBackend(Protocol):
    """What the engine needs from a network."""

    config: ModelConfig
    device: torch.device
    dtype: torch.dtype  # the compute precision; inputs are always passed as float32

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]: ...


class TorchNetwork:
    """The LoRAT module in eval mode under ``torch.inference_mode`` and, for bf16/fp16, autocast around fp32 weights
    (the reference's AMP inference).

    A model that still carries LoRA adapters is copied and merged first (the user's model is left as it is), so
    what runs is always the merged plain ViT. A merged model (what :func:`lorat_plugin.model.sources.load_model`
    returns) is used as it is: moved to ``device`` and switched to eval mode in place (deep-copy a model that is
    still being trained).
    """

    def __init__(self, model: LoRAT, device: torch.device | str | None = None,
                 dtype: torch.dtype | str | None = None) -> None:
        if not isinstance(model, torch.nn.Module) or not isinstance(getattr(model, "config", None), ModelConfig):
            raise TypeError(f"expected a LoRAT model (lorat_plugin.model.build_model / load_model), got {type(model)}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if getattr(model, "has_lora", False):
            log.info("the model carries unmerged LoRA adapters: tracking with a merged copy")
            model = copy.deepcopy(model)
            model.strip_lora()
        self.model = model.to(self.device).eval()
        self.config: ModelConfig = model.config

    def __call__(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype,
                                                    enabled=self.dtype != torch.float32):
            out = self.model(z, x, z_feat_mask)
        return out["score_map"], out["boxes"]
