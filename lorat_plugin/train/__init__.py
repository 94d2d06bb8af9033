"""Training LoRAT: the paper's recipe from one process to many under torchrun.

``load_config`` reads a YAML config (defaults = the recipe), ``train`` runs it. The pieces are importable on their
own: pair sampling (:mod:`.source`), crops / augmentations / labels (:mod:`.pairs`, :mod:`.augment`,
:mod:`.labels`), the input pipeline (:mod:`.data`), the loss (:mod:`.loss`), optimiser and schedule
(:mod:`.optim`), one optimiser step (:mod:`.step`, also for benchmarks), checkpoints and resumable state
(:mod:`.state`). Validation is the caller's (``train(..., validation=...)``): training imports no tracking engine.
See docs/training.md.
"""
from .config import ConfigError, TrainConfig, load_config
from .loss import tracking_loss
from .trainer import TrainResult, build_training_model, train

__all__ = ["TrainConfig", "ConfigError", "load_config", "train", "TrainResult", "build_training_model",
           "tracking_loss"]
