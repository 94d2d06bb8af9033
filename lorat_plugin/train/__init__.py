"""Training LoRAT: the paper's recipe from one process to many under torchrun (docs/training.md).

``load_config`` reads a YAML config (defaults = the recipe), ``train`` runs it. Sampling, crops, augmentations,
labels, the input pipeline, loss, optimiser, one step (also for benchmarks) and the run's files are modules of their
own. Validation is the caller's (``train(..., validation=...)``): training imports no tracking engine.
"""
from .config import ConfigError, TrainConfig, load_config
from .loss import tracking_loss
from .trainer import TrainResult, build_training_model, train

__all__ = ["TrainConfig", "ConfigError", "load_config", "train", "TrainResult", "build_training_model",
           "tracking_loss"]
