"""The LoRAT network, its named variants, LoRA and weight files.

The configs are plain dataclasses and load at once; the network, the builder, LoRA and the weight files load on
first use, so a module that needs only ``ModelConfig`` (the training pair sampler in DataLoader workers) loads
neither the network nor timm.
"""
from __future__ import annotations

import importlib
from typing import Any

from .config import VARIANTS, ModelConfig, get_config, list_variants

# name -> the module of this package that defines it
_ON_FIRST_USE = {"build_model": "build", "count_parameters": "build", "LoRAT": "network", "LoRALinear": "lora",
                 "WeightsError": "weights", "read_weights": "weights", "save_checkpoint": "weights"}
__all__ = ["ModelConfig", "VARIANTS", "get_config", "list_variants", "build_model", "count_parameters", "LoRAT",
           "LoRALinear", "WeightsError", "read_weights", "save_checkpoint"]


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(f".{_ON_FIRST_USE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
