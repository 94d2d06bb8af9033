"""Training LoRAT: the paper's recipe from one process to many under torchrun (docs/training.md).

``load_config`` reads a YAML config (defaults = the recipe), ``train`` runs it. Sampling, crops, augmentations,
labels, the input pipeline (``loader``), loss, optimiser, one step (also for benchmarks) and the run's files are
modules of their own. Validation is the caller's (``train(..., validation=...)``): training imports no tracking
engine. The names below load on first use, so a DataLoader worker, which imports ``loader`` and ``pairs``, loads
neither the network nor timm.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the module of this package that defines it
_ON_FIRST_USE = {"TrainConfig": "config", "ConfigError": "config", "load_config": "config", "tracking_loss": "loss",
                 "train": "trainer", "TrainResult": "trainer", "build_training_model": "trainer"}
__all__ = ["TrainConfig", "ConfigError", "load_config", "train", "TrainResult", "build_training_model",
           "tracking_loss"]


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(f".{_ON_FIRST_USE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
