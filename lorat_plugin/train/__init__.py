"""Training LoRAT: the paper's recipe from one process to many under torchrun (docs/training.md).

``load_config`` reads a YAML config (defaults = the recipe), ``train`` runs it. Sampling, crops, augmentations,
labels, the input pipeline (``loader``), loss, optimiser, one step (also for benchmarks) and the run's files are
modules of their own. Validation is the caller's (``train(..., validation=...)``): training imports no tracking
engine. The names below load on first use, so a DataLoader worker, which imports ``loader`` and ``pairs``, loads
neither the network nor timm.
"""
from __future__ import annotations

from ..lazy import exports_on_first_use

__getattr__, __dir__ = exports_on_first_use(__name__, {
    "TrainConfig": "config", "ConfigError": "config", "load_config": "config", "tracking_loss": "loss",
    "train": "trainer", "TrainResult": "trainer", "build_training_model": "trainer"})
__all__ = ["TrainConfig", "ConfigError", "load_config", "train", "TrainResult", "build_training_model",
           "tracking_loss"]
