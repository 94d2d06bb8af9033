"""lorat-plugin: the LoRAT tracker (Lin et al., ECCV 2024) for the single-object tracking toolkits."""
from .model import VARIANTS, ModelConfig, WeightsError, build_model, get_config, list_variants, save_checkpoint

__version__ = "0.1.0"
__all__ = ["ModelConfig", "VARIANTS", "build_model", "get_config", "list_variants", "save_checkpoint",
           "WeightsError", "__version__"]
