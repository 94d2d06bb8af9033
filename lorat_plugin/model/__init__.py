"""The LoRAT network, its named variants, LoRA and weight files.

The configs are plain dataclasses and load at once; the network, the builder, LoRA and the weight files load on
first use, so a module that needs only ``ModelConfig`` (the training pair sampler in DataLoader workers) loads
neither the network nor timm.
"""
from __future__ import annotations

from ..lazy import exports_on_first_use
from .config import VARIANTS, ModelConfig, get_config, list_variants

__getattr__, __dir__ = exports_on_first_use(__name__, {
    "build_model": "build", "count_parameters": "build", "LoRAT": "network", "LoRALinear": "lora",
    "WeightsError": "weights", "read_weights": "weights", "save_checkpoint": "weights"})
__all__ = ["ModelConfig", "VARIANTS", "get_config", "list_variants", "build_model", "count_parameters", "LoRAT",
           "LoRALinear", "WeightsError", "read_weights", "save_checkpoint"]
